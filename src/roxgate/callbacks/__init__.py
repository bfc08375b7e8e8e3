"""Reporting back to customers: receipts and replies, by HTTP callback or e-mail.

``http`` is the worker that POSTs the callbacks outbox (retries with backoff,
the SSRF guard, per-host isolation), signed by ``roxgate.rox.signing`` (the
HMAC scheme of SPEC.md §3, shared with the SDK that verifies it); a callback
that fails for good becomes an e-mail in the mail outbox, which ``mail`` sends
over SMTP.
"""
