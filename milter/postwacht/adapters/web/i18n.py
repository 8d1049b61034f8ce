"""Every word the site shows, in English and Dutch; the browser's Accept-Language picks.

What the records hold (reasons, rule names, a review error from `records.review`) is
shown as it was written. A key missing from a catalogue shows the English text, and the
unit tests fail on it."""

from __future__ import annotations

LANGUAGES = ["en", "nl"]
DEFAULT = "en"

EN: dict[str, str] = {
    "nav.held": "Held mail", "nav.audit": "Audit trail", "nav.retired": "Retired addresses",
    "nav.domains": "Domains", "nav.policy": "Policy", "nav.users": "Accounts",
    "nav.logout": "Sign out",
    "role.viewer": "viewer", "role.reviewer": "reviewer", "role.approver": "approver",
    "role.admin": "administrator",
    "status.held": "held", "status.requested": "requested", "status.released": "released",
    "status.deleted": "deleted", "status.expired": "expired", "status.gone": "gone",
    "status.dismissed": "dismissed",
    "state.open": "to review", "state.held": "held", "state.requested": "requested",
    "state.awaiting": "awaiting approval", "state.gone": "gone", "state.all": "all",
    "action.release": "Release", "action.delete": "Delete", "action.expire": "Expire",
    "action.dismiss": "Dismiss",
    "release.plain": "Release", "release.route": "Release through the secure route",
    "release.override": "Release as an override",
    "release.second": "Needs a second person's approval: {why}",
    "done.release": "Release requested: the MTA that holds the message carries it out.",
    "done.delete": "Delete requested: the MTA that holds the message carries it out.",
    "done.approve": "Approved: the MTA that holds the message now releases it.",
    "done.decline": "Declined: the message is held again.",
    "done.dismiss": "Dismissed.",
    "login.title": "Sign in", "login.name": "Name", "login.password": "Password",
    "login.submit": "Sign in", "login.failed": "Wrong name or password.",
    "login.too_many": "Too many failed sign-ins. The password was not checked.",
    "login.retry": "Try again after {at}.",
    "filter.state": "State", "filter.rule": "Rule", "filter.any": "any",
    "filter.sender": "Sender contains", "filter.domain": "Recipient domain contains",
    "filter.mta": "MTA", "filter.age": "Older than (hours)", "filter.q": "Search",
    "filter.apply": "Show",
    "held.title": "Held mail", "held.none": "No held mail matches.",
    "held.more": "Showing the newest {shown} of {total}: narrow the filters to see others.",
    "field.held_at": "Held at", "field.age": "Age (h)", "field.mta": "MTA",
    "field.queue_id": "Queue id", "field.sender": "Sender", "field.recipients": "Recipients",
    "field.recipient": "Recipient", "field.rule": "Rule", "field.state": "State",
    "field.reason": "Reason", "field.client": "Client", "field.closed_at": "Closed at",
    "field.policy": "Policy checksum", "field.route": "Secure route",
    "field.detected": "Found sensitive by", "field.verdict": "Verdict",
    "field.matched": "Matched", "field.action": "Action", "field.asked_by": "Asked by",
    "field.needs_approval": "Needs approval because", "field.approved_by": "Approved by",
    "field.outcome": "Outcome",
    "form.reason": "Reason",
    "bulk.title": "With the selected messages", "bulk.action": "Action",
    "bulk.submit": "Ask", "bulk.pick": "Select", "bulk.result": "Result",
    "bulk.outcome": "Outcome", "bulk.detail": "Detail", "bulk.done": "asked",
    "bulk.not_done": "not asked",
    "bulk.requested": "{action} requested (request {request})",
    "bulk.awaiting": "Release asked; it waits for a second person's approval: {why}",
    "record.title": "Held message #{id} ({queue_id})", "record.envelope": "Envelope",
    "record.decision": "Decision", "record.request": "Request", "record.pending": "pending",
    "record.content": "Content", "record.actions": "Actions",
    "record.approval": "Approval", "record.trail": "Audit trail of this message",
    "content.header": "Header", "content.value": "Value", "content.text": "Text",
    "content.no_text": "The message has no text part.",
    "content.attachments": "Attachments", "content.name": "Name", "content.type": "Type",
    "content.size": "Size (bytes)", "content.captured": "Captured at {at}.",
    "content.fetching": "The content is being fetched from {mta}, the MTA that holds the "
                        "message. This page reloads by itself.",
    "content.none": "No content is kept for this message.",
    "approval.approve": "Approve", "approval.decline": "Decline",
    "approval.withdraw": "Withdraw my request",
    "approval.not_own": "You asked for this release: another person must approve it.",
    "approval.needs_approver": "An approver must approve or decline this release.",
    "action.reason_required": "A reason is required: it is kept in the audit trail.",
    "action.reason_long": "The reason is too long: at most {limit} characters.",
    "action.not_awaiting": "This message has no request awaiting approval.",
    "action.own_request": "You cannot approve your own request: another person must.",
    "audit.title": "Audit trail", "audit.actor": "Who", "audit.at": "When",
    "audit.record": "Record", "audit.since": "Since", "audit.domains": "Domains",
    "audit.detail": "Detail", "audit.override": "override",
    "audit.none": "No entries match.", "audit.older": "Older entries",
    "retired.title": "Mail to retired addresses", "retired.days": "Last days",
    "retired.none": "No attempts to mail a retired domain in the last {days} days.",
    "retired.attempts": "Attempts", "retired.domain": "Retired domain",
    "retired.first": "First", "retired.last": "Last",
    "domains.title": "Domain watch", "domains.domain": "Domain", "domains.status": "Status",
    "domains.detail": "Detail", "policy.title": "Running policy",
    "published.none": "No MTA has published this report yet.",
    "published.at": "Published at {at}.",
    "users.title": "Accounts", "users.role": "Role", "users.email": "Email",
    "users.has_password": "Password", "users.created": "Created", "users.change": "Change",
    "users.yes": "yes", "users.no": "no (single sign-on only)",
    "users.set_role": "Set role", "users.remove": "Remove",
    "users.new_password": "New password", "users.set_password": "Set password",
    "users.add": "Add account", "users.initial_password": "Initial password",
    "users.password_hint": "At least 12 characters; leave empty for an account that signs "
                           "in through single sign-on only.",
    "users.bad_name": "A name is one word of printable characters, at most 64.",
    "users.bad_email": "That is not one email address.",
    "users.bad_role": "Choose one of the roles.",
    "users.not_yourself": "You cannot remove yourself or change your own role: ask another "
                          "administrator.",
    "users.added": "Account {name} added.", "users.removed": "Account {name} removed.",
    "users.role_set": "{name} is now {role}.", "users.password_set": "Password of {name} set.",
    "password.too_short": "A password has at least {min} characters.",
    "password.too_long": "A password has at most {max} characters.",
    "error.title": "Error {status}", "error.back": "Back to the held mail",
    "error.csrf": "This form is out of date or did not come from this site. Go back, reload "
                  "the page and try again.",
    "error.signed_out": "You are not signed in (or your session ended). Sign in and try "
                        "again.",
    "error.role": "Your role ({role}) does not allow this; it needs {needed} or higher.",
    "error.sso_unknown": "The single sign-on name {name} is not an account here. Ask an "
                         "administrator to add it.",
    "error.no_record": "There is no held-mail record #{record}.",
    "error.parameter": "The parameter {name} is not valid: expected {expected}.",
    "error.plain": "{message}",
    "error.store": "The records store cannot be used now; the site's log says why. "
                   "Try again in a minute, or tell the postmaster.",
    "error.http": "The request cannot be answered.",
    "error.http400": "The request is not valid.",
    "error.http403": "This is not allowed.",
    "error.http404": "There is no such page.",
    "error.http405": "This page does not take that kind of request.",
    "error.http413": "The request is too large.",
    "error.http500": "Something went wrong on the server; it has been logged.",
    "expect.text": "text of at most {limit} printable characters",
    "expect.number": "a number from 0 to {top}",
    "expect.whole": "a whole number from 0 to {top}",
    "expect.choice": "one of {choices}",
    "expect.date": "a date or time, e.g. 2026-11-01 or 2026-11-01T08:00",
    "expect.records": "1 to {limit} record numbers",
    "confirm.title_send": "Send your held message?",
    "confirm.title_cancel": "Delete your held message?",
    "confirm.intro": "Postwacht held a message you sent: it contains sensitive information and "
                     "goes to an address you have not mailed before. Check the addresses.",
    "confirm.new_recipients": "New recipients",
    "confirm.ask_send": "Are these the right recipients? Then press the button: the message is "
                        "sent to them, and your next messages to them are not held for this.",
    "confirm.ask_cancel": "Is an address wrong? Then press the button: the message is deleted "
                          "and not sent. Send it again to the right address.",
    "confirm.send": "Send it to these recipients", "confirm.cancel": "Delete this message",
    "confirm.until": "This link works until {at}.",
    "confirm.done_send_title": "The message is on its way",
    "confirm.done_send": "Postwacht sends it to the recipients shown within a few minutes.",
    "confirm.done_cancel_title": "The message was deleted",
    "confirm.done_cancel": "It is not sent. Send it again to the right address if it is still "
                           "needed.",
    "confirm.audited": "Your decision is kept: a privacy officer can see it in the audit trail.",
    "confirm.title_tampered": "This link cannot be used",
    "confirm.tampered": "This link is damaged or was changed. Use the link in the notice as it "
                        "was sent, or ask your privacy officer.",
    "confirm.title_expired": "This link has expired",
    "confirm.expired": "This link has expired on {at}. Your message is still held; your "
                       "privacy officer can release it.",
    "confirm.expired_at": "This link has expired on {at}.",
    "confirm.title_conflict": "This message no longer waits for you",
    "confirm.officer": "This message was held for another reason too, not only for a new "
                       "recipient: a privacy officer decides whether it may be sent. Ask your "
                       "privacy officer.",
    "confirm.already_sent": "You already confirmed this message: it is on its way.",
    "confirm.already_cancelled": "You already cancelled this message: it is deleted, not sent.",
    "confirm.release_asked": "A privacy officer has already asked to release this message.",
    "confirm.delete_asked": "A privacy officer has already asked to delete this message.",
    "confirm.released": "This message was already released.",
    "confirm.deleted": "This message was already deleted.",
    "confirm.expired_record": "This message was held longer than your organisation keeps held "
                              "mail, and has expired: it was not sent.",
    "confirm.gone": "This message is no longer held. Ask your privacy officer what became of "
                    "it.",
}

NL: dict[str, str] = {
    "nav.held": "Vastgehouden mail", "nav.audit": "Auditlog", "nav.retired": "Oude adressen",
    "nav.domains": "Domeinen", "nav.policy": "Beleid", "nav.users": "Accounts",
    "nav.logout": "Afmelden",
    "role.viewer": "kijker", "role.reviewer": "beoordelaar", "role.approver": "goedkeurder",
    "role.admin": "beheerder",
    "status.held": "vastgehouden", "status.requested": "aangevraagd",
    "status.released": "vrijgegeven", "status.deleted": "verwijderd",
    "status.expired": "verlopen", "status.gone": "verdwenen", "status.dismissed": "afgesloten",
    "state.open": "te beoordelen", "state.held": "vastgehouden",
    "state.requested": "aangevraagd", "state.awaiting": "wacht op goedkeuring",
    "state.gone": "verdwenen", "state.all": "alles",
    "action.release": "Vrijgeven", "action.delete": "Verwijderen",
    "action.expire": "Laten verlopen",    "action.dismiss": "Afsluiten",
    "release.plain": "Vrijgeven", "release.route": "Vrijgeven via de beveiligde route",
    "release.override": "Vrijgeven als uitzondering",
    "release.second": "Een tweede persoon moet dit goedkeuren: {why}",
    "done.release": "Vrijgave aangevraagd: de MTA die het bericht vasthoudt voert die uit.",
    "done.delete": "Verwijderen aangevraagd: de MTA die het bericht vasthoudt voert dat uit.",
    "done.approve": "Goedgekeurd: de MTA die het bericht vasthoudt geeft het nu vrij.",
    "done.decline": "Afgewezen: het bericht blijft vastgehouden.",
    "done.dismiss": "Afgesloten.",
    "login.title": "Aanmelden", "login.name": "Naam", "login.password": "Wachtwoord",
    "login.submit": "Aanmelden", "login.failed": "Naam of wachtwoord onjuist.",
    "login.too_many": "Te veel mislukte aanmeldingen. Het wachtwoord is niet gecontroleerd.",
    "login.retry": "Probeer het opnieuw na {at}.",
    "filter.state": "Stand", "filter.rule": "Regel", "filter.any": "alle",
    "filter.sender": "Afzender bevat", "filter.domain": "Ontvangerdomein bevat",
    "filter.mta": "MTA", "filter.age": "Ouder dan (uren)", "filter.q": "Zoeken",
    "filter.apply": "Toon",
    "held.title": "Vastgehouden mail", "held.none": "Geen vastgehouden mail gevonden.",
    "held.more": "De nieuwste {shown} van {total}: verfijn de filters om de rest te zien.",
    "field.held_at": "Vastgehouden op", "field.age": "Leeftijd (u)", "field.mta": "MTA",
    "field.queue_id": "Queue-id", "field.sender": "Afzender", "field.recipients": "Ontvangers",
    "field.recipient": "Ontvanger", "field.rule": "Regel", "field.state": "Stand",
    "field.reason": "Reden", "field.client": "Client", "field.closed_at": "Gesloten op",
    "field.policy": "Controlegetal beleid", "field.route": "Beveiligde route",
    "field.detected": "Gevoelig bevonden door", "field.verdict": "Oordeel",
    "field.matched": "Overeenkomst", "field.action": "Actie", "field.asked_by": "Gevraagd door",
    "field.needs_approval": "Goedkeuring nodig omdat", "field.approved_by": "Goedgekeurd door",
    "field.outcome": "Uitkomst",
    "form.reason": "Reden",
    "bulk.title": "Met de gekozen berichten", "bulk.action": "Actie",
    "bulk.submit": "Aanvragen", "bulk.pick": "Kies", "bulk.result": "Resultaat",
    "bulk.outcome": "Uitkomst", "bulk.detail": "Toelichting", "bulk.done": "aangevraagd",
    "bulk.not_done": "niet aangevraagd",
    "bulk.requested": "{action} aangevraagd (aanvraag {request})",
    "bulk.awaiting": "Vrijgave gevraagd; die wacht op goedkeuring door een tweede persoon: "
                     "{why}",
    "record.title": "Vastgehouden bericht #{id} ({queue_id})", "record.envelope": "Envelop",
    "record.decision": "Besluit", "record.request": "Aanvraag", "record.pending": "in behandeling",
    "record.content": "Inhoud", "record.actions": "Acties",
    "record.approval": "Goedkeuring", "record.trail": "Auditlog van dit bericht",
    "content.header": "Kop", "content.value": "Waarde", "content.text": "Tekst",
    "content.no_text": "Het bericht heeft geen tekstdeel.",
    "content.attachments": "Bijlagen", "content.name": "Naam", "content.type": "Soort",
    "content.size": "Grootte (bytes)", "content.captured": "Vastgelegd op {at}.",
    "content.fetching": "De inhoud wordt opgehaald bij {mta}, de MTA die het bericht "
                        "vasthoudt. Deze pagina ververst vanzelf.",
    "content.none": "Van dit bericht is geen inhoud bewaard.",
    "approval.approve": "Goedkeuren", "approval.decline": "Afwijzen",
    "approval.withdraw": "Mijn aanvraag intrekken",
    "approval.not_own": "U vroeg deze vrijgave aan: een ander moet haar goedkeuren.",
    "approval.needs_approver": "Een goedkeurder moet deze vrijgave goedkeuren of afwijzen.",
    "action.reason_required": "Een reden is verplicht: die komt in het auditlog.",
    "action.reason_long": "De reden is te lang: hoogstens {limit} tekens.",
    "action.not_awaiting": "Voor dit bericht wacht geen aanvraag op goedkeuring.",
    "action.own_request": "U kunt uw eigen aanvraag niet goedkeuren: een ander moet dat doen.",
    "audit.title": "Auditlog", "audit.actor": "Wie", "audit.at": "Wanneer",
    "audit.record": "Record", "audit.since": "Vanaf", "audit.domains": "Domeinen",
    "audit.detail": "Toelichting", "audit.override": "uitzondering",
    "audit.none": "Geen regels gevonden.", "audit.older": "Oudere regels",
    "retired.title": "Mail aan oude adressen", "retired.days": "Laatste dagen",
    "retired.none": "Geen pogingen om een oud domein te mailen in de laatste {days} dagen.",
    "retired.attempts": "Pogingen", "retired.domain": "Oud domein",
    "retired.first": "Eerste", "retired.last": "Laatste",
    "domains.title": "Domeinbewaking", "domains.domain": "Domein", "domains.status": "Stand",
    "domains.detail": "Toelichting", "policy.title": "Geldend beleid",
    "published.none": "Nog geen MTA heeft dit overzicht gepubliceerd.",
    "published.at": "Gepubliceerd op {at}.",
    "users.title": "Accounts", "users.role": "Rol", "users.email": "E-mail",
    "users.has_password": "Wachtwoord", "users.created": "Aangemaakt",
    "users.change": "Wijzigen", "users.yes": "ja", "users.no": "nee (alleen single sign-on)",
    "users.set_role": "Rol instellen", "users.remove": "Verwijderen",
    "users.new_password": "Nieuw wachtwoord", "users.set_password": "Wachtwoord instellen",
    "users.add": "Account toevoegen", "users.initial_password": "Eerste wachtwoord",
    "users.password_hint": "Minstens 12 tekens; laat leeg voor een account dat alleen via "
                           "single sign-on aanmeldt.",
    "users.bad_name": "Een naam is één woord van leesbare tekens, hoogstens 64.",
    "users.bad_email": "Dat is niet één e-mailadres.",
    "users.bad_role": "Kies een van de rollen.",
    "users.not_yourself": "U kunt uzelf niet verwijderen of uw eigen rol wijzigen: vraag een "
                          "andere beheerder.",
    "users.added": "Account {name} toegevoegd.", "users.removed": "Account {name} verwijderd.",
    "users.role_set": "{name} is nu {role}.",
    "users.password_set": "Wachtwoord van {name} ingesteld.",
    "password.too_short": "Een wachtwoord heeft minstens {min} tekens.",
    "password.too_long": "Een wachtwoord heeft hoogstens {max} tekens.",
    "error.title": "Fout {status}", "error.back": "Terug naar de vastgehouden mail",
    "error.csrf": "Dit formulier is verlopen of kwam niet van deze site. Ga terug, laad de "
                  "pagina opnieuw en probeer het nog eens.",
    "error.signed_out": "U bent niet aangemeld (of uw sessie is verlopen). Meld u aan en "
                        "probeer het opnieuw.",
    "error.role": "Uw rol ({role}) staat dit niet toe; daarvoor is {needed} of hoger nodig.",
    "error.sso_unknown": "De single-sign-on-naam {name} is hier geen account. Vraag een "
                         "beheerder die toe te voegen.",
    "error.no_record": "Er is geen record #{record} van vastgehouden mail.",
    "error.parameter": "De parameter {name} is ongeldig: verwacht {expected}.",
    "error.plain": "{message}",
    "error.store": "De recordopslag is nu niet te gebruiken; het logboek van de site zegt "
                   "waarom. Probeer het over een minuut opnieuw, of meld het de postmaster.",
    "error.http": "Dit verzoek kan niet worden beantwoord.",
    "error.http400": "Het verzoek is ongeldig.",
    "error.http403": "Dit is niet toegestaan.",
    "error.http404": "Deze pagina bestaat niet.",
    "error.http405": "Deze pagina accepteert dit soort verzoek niet.",
    "error.http413": "Het verzoek is te groot.",
    "error.http500": "Er ging iets mis op de server; dat is gelogd.",
    "expect.text": "tekst van hoogstens {limit} leesbare tekens",
    "expect.number": "een getal van 0 tot {top}",
    "expect.whole": "een geheel getal van 0 tot {top}",
    "expect.choice": "een van {choices}",
    "expect.date": "een datum of tijd, bijv. 2026-11-01 of 2026-11-01T08:00",
    "expect.records": "1 tot {limit} recordnummers",
    "confirm.title_send": "Uw tegengehouden bericht versturen?",
    "confirm.title_cancel": "Uw tegengehouden bericht verwijderen?",
    "confirm.intro": "Postwacht heeft een bericht van u tegengehouden: het bevat gevoelige "
                     "gegevens en gaat naar een adres dat u nog niet eerder mailde. "
                     "Controleer de adressen.",
    "confirm.new_recipients": "Nieuwe ontvangers",
    "confirm.ask_send": "Zijn dit de juiste ontvangers? Druk dan op de knop: het bericht gaat "
                        "naar hen toe, en uw volgende berichten aan hen worden hierom niet "
                        "meer tegengehouden.",
    "confirm.ask_cancel": "Klopt een adres niet? Druk dan op de knop: het bericht wordt "
                          "verwijderd en niet verstuurd. Stuur het opnieuw naar het juiste "
                          "adres.",
    "confirm.send": "Verstuur het naar deze ontvangers",
    "confirm.cancel": "Verwijder dit bericht",
    "confirm.until": "Deze link werkt tot {at}.",
    "confirm.done_send_title": "Het bericht is onderweg",
    "confirm.done_send": "Postwacht verstuurt het binnen enkele minuten naar de getoonde "
                         "ontvangers.",
    "confirm.done_cancel_title": "Het bericht is verwijderd",
    "confirm.done_cancel": "Het wordt niet verstuurd. Stuur het opnieuw naar het juiste adres "
                           "als het nog nodig is.",
    "confirm.audited": "Uw besluit is vastgelegd: een privacyfunctionaris ziet het in het "
                       "auditlog.",
    "confirm.title_tampered": "Deze link is niet te gebruiken",
    "confirm.tampered": "Deze link is beschadigd of veranderd. Gebruik de link uit de melding "
                        "zoals die verstuurd is, of vraag het uw privacyfunctionaris.",
    "confirm.title_expired": "Deze link is verlopen",
    "confirm.expired": "Deze link is verlopen op {at}. Uw bericht wordt nog steeds "
                       "tegengehouden; uw privacyfunctionaris kan het vrijgeven.",
    "confirm.expired_at": "Deze link is verlopen op {at}.",
    "confirm.title_conflict": "Dit bericht wacht niet meer op u",
    "confirm.officer": "Dit bericht is ook om een andere reden tegengehouden, niet alleen om een "
                       "nieuwe ontvanger: een privacyfunctionaris beslist of het verstuurd mag "
                       "worden. Vraag het uw privacyfunctionaris.",
    "confirm.already_sent": "U hebt dit bericht al bevestigd: het is onderweg.",
    "confirm.already_cancelled": "U hebt dit bericht al geannuleerd: het is verwijderd, niet "
                                 "verstuurd.",
    "confirm.release_asked": "Een privacyfunctionaris heeft al gevraagd dit bericht vrij te "
                             "geven.",
    "confirm.delete_asked": "Een privacyfunctionaris heeft al gevraagd dit bericht te "
                            "verwijderen.",
    "confirm.released": "Dit bericht is al vrijgegeven.",
    "confirm.deleted": "Dit bericht is al verwijderd.",
    "confirm.expired_record": "Dit bericht werd langer tegengehouden dan uw organisatie "
                              "tegengehouden mail bewaart, en is verlopen: het is niet "
                              "verstuurd.",
    "confirm.gone": "Dit bericht wordt niet meer tegengehouden. Vraag uw privacyfunctionaris "
                    "wat ermee gebeurd is.",
}

CATALOGUES = {"en": EN, "nl": NL}


class Words:
    """The catalogue of one language, as templates and routes call it: `t("key", n=1)`."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in CATALOGUES else DEFAULT
        self._table = CATALOGUES[self.lang]

    def has(self, key: str) -> bool:
        return key in self._table

    def __call__(self, key: str, **values: object) -> str:
        text = self._table.get(key) or EN.get(key) or key
        return text.format(**values) if values else text
