"""gunicorn settings for meetbit-bridge (`gunicorn 'bridge:create_app()' -c config/gunicorn.conf.py`).

Time budget of one synchronous webhook, worst case:
    BRIDGE_SYNC_DEADLINE (8 s) bounds rate-slot wait + MeetBit call (the read timeout is cut to
    what is left of the deadline), then the ledger write: ~8.5 s.
  Senders give up earlier or later (HubSpot app webhooks ~5 s: use `respond: ack` there;
  Pipedrive 10 s, Zendesk ~10-12 s, HubSpot workflows 30 s), so 8 s fits most.
With gthread workers gunicorn's `timeout` only detects a stuck worker (no heartbeat) and does
not bound a request: our own deadline is the bound. `timeout` stays well above the deadline so
a busy worker is never killed mid-cancel (which would leave an in-flight lease to expire).
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads mostly wait on MeetBit or on a rate-limit slot, so several per worker are cheap.
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 30
graceful_timeout = 20
keepalive = 5
# Platform routers terminate TLS; trust their X-Forwarded-* headers.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
