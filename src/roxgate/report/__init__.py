"""Reporting back: receipts and replies to customers' callbacks, with e-mail as the fallback."""
