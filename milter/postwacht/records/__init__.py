"""Records: why each held message is held, who reviewed what, and who still mails
retired domains; and the review of Postfix's hold queue joined with them.

`store.RecordStore` is the interface every backend implements; `sqlite.SqliteRecords`
is the embedded default, one file in the state directory.
"""
