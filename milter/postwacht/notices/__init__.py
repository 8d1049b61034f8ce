"""Notices: the sender of held mail is told at once that it was held and why (never its
content), and reviewers get a digest of what waits for them, both sent through Postfix
with sendmail(1)."""
