"""SMPP 3.4 support.

* :mod:`roxgate.carriers.smpp.pdu`: the PDU codec (no I/O): command ids, statuses, the
  PDU dataclasses, ``encode`` / ``decode``, stream framing, TLV helpers, GSM 7-bit
  packing, concatenation UDH and SMPP time formats.
* :mod:`roxgate.carriers.smpp.receipt`: delivery receipt parsing and message id
  variants for correlating receipts with submissions.
* :mod:`roxgate.carriers.smpp.url`: ``smpp://`` / ``smpps://`` carrier URLs.
* :mod:`roxgate.carriers.smpp.session`: the asyncio ESME session (bind, window,
  rate limit, keep-alive, reconnect, deliver_sm handling) and text → submit_sm.
"""
