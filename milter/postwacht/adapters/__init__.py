"""Adapters: each speaks one protocol and translates, never decides.

- `milterd`: the milter protocol (pymilter) to `core.outcome` and back;
- `socketmap` (with `netstring`): Postfix table lookups to `core.tables` answers;
- `control`: the control socket (`reload`, `status`) to the policy holder;
- `releasehelper`: the root helper's socket (one request or capture number per connection);
- `web`: the review site (HTTP) to `records.review` and the records store.
What an answer means is decided in the core; here it becomes bytes on a wire.
"""
