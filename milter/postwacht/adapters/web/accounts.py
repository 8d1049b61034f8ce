"""The accounts page (admins only): list, add, change a role or a password, remove. The
store audits every change under the admin's name.

An admin cannot remove or demote themselves here: the last admin would lock everybody out
of this page (`postwacht users` on the command line still can).
"""

from __future__ import annotations

from flask import Flask, Response, request

from postwacht.adapters.web.auth import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    is_email,
    is_user_name,
    password_problem,
)
from postwacht.adapters.web.site import Desk
from postwacht.core.roles import Permission, Role
from postwacht.core.text import printable
from postwacht.records.store import ConflictError


def register(app: Flask, desk: Desk) -> None:
    @app.get("/users")
    def users() -> Response:
        return users_page(desk)

    @app.post("/users/add")
    def add_user() -> Response:
        admin = desk.require(Permission.ACCOUNTS)
        form = request.form
        name, email = form.get("name", "").strip(), form.get("email", "").strip()
        password = form.get("password", "")
        words = desk.words()
        if not is_user_name(name):
            return users_page(desk, 400, words("users.bad_name"))
        if email and not is_email(email):
            return users_page(desk, 400, words("users.bad_email"))
        role = _role(form.get("role", ""))
        if role is None:
            return users_page(desk, 400, words("users.bad_role"))
        if password and (problem := password_problem(password)):
            return users_page(desk, 400, words(problem, min=PASSWORD_MIN, max=PASSWORD_MAX))
        hashed = desk.passwords.hash(password) if password else ""
        try:
            desk.store.add_user(name, role, email, hashed, admin.name)
        except ConflictError as exc:
            return users_page(desk, 409, printable(str(exc)))
        return users_page(desk, message=words("users.added", name=name))

    @app.post("/users/role")
    def set_role() -> Response:
        admin = desk.require(Permission.ACCOUNTS)
        name, role = request.form.get("name", ""), _role(request.form.get("role", ""))
        words = desk.words()
        if role is None:
            return users_page(desk, 400, words("users.bad_role"))
        if name == admin.name:
            return users_page(desk, 409, words("users.not_yourself"))
        try:
            desk.store.set_role(name, role, admin.name)
        except ConflictError as exc:
            return users_page(desk, 409, printable(str(exc)))
        return users_page(desk, message=words("users.role_set", name=name, role=role))

    @app.post("/users/password")
    def set_password() -> Response:
        admin = desk.require(Permission.ACCOUNTS)
        name, password = request.form.get("name", ""), request.form.get("password", "")
        words = desk.words()
        if problem := password_problem(password):
            return users_page(desk, 400, words(problem, min=PASSWORD_MIN, max=PASSWORD_MAX))
        try:
            desk.store.set_password(name, desk.passwords.hash(password), admin.name)
        except ConflictError as exc:
            return users_page(desk, 409, printable(str(exc)))
        return users_page(desk, message=words("users.password_set", name=name))

    @app.post("/users/remove")
    def remove_user() -> Response:
        admin = desk.require(Permission.ACCOUNTS)
        name = request.form.get("name", "")
        words = desk.words()
        if name == admin.name:
            return users_page(desk, 409, words("users.not_yourself"))
        try:
            desk.store.remove_user(name, admin.name)
        except ConflictError as exc:
            return users_page(desk, 409, printable(str(exc)))
        return users_page(desk, message=words("users.removed", name=name))


def _role(text: str) -> Role | None:
    return Role(text) if text in tuple(Role) else None


def users_page(desk: Desk, status: int = 200, error: str = "", message: str = "") -> Response:
    desk.require(Permission.ACCOUNTS)
    return desk.render("users.html", status, users=desk.store.users(), roles=list(Role),
                       error=error, message=message)
