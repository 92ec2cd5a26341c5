"""gunicorn settings for meetbit-bridge (`gunicorn 'bridge:create_app()' -c <this file>`).

Time budget of one synchronous webhook, worst case:
    BRIDGE_SYNC_DEADLINE (8 s) bounds rate-slot wait + MeetBit call (the read timeout is cut to
    what is left of the deadline), then the ledger write: ~8.5 s.
  Senders give up earlier or later (HubSpot app webhooks ~5 s: use `respond: ack` there;
  Pipedrive 10 s, Zendesk ~10-12 s, HubSpot workflows 30 s), so 8 s fits most.
With gthread workers gunicorn's `timeout` only detects a stuck worker (no heartbeat) and does
not bound a request: our own deadline is the bound. `timeout` stays well above the deadline so
a busy worker is never killed mid-cancel (which would leave an in-flight lease to expire).
"""

import atexit
import glob
import os
import shutil
import tempfile

# Prometheus multiprocess mode: every worker writes its samples to files in this directory and
# `/metrics` (whichever worker answers) merges them. It must be set here, in the master, before
# any worker imports prometheus_client; a directory we create is removed when gunicorn exits.
# With USR2 binary upgrades the old master would remove the directory the new one still uses:
# set PROMETHEUS_MULTIPROC_DIR yourself there.
_METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_created_metrics_dir = None
_master_pid = os.getpid()


def _remove_metrics_dir():
    # Workers are forked from this process and inherit atexit handlers: only the master cleans.
    if _created_metrics_dir and os.getpid() == _master_pid:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)


if not os.environ.get(_METRICS_ENV):
    _created_metrics_dir = tempfile.mkdtemp(prefix="meetbit-bridge-metrics-")
    os.environ[_METRICS_ENV] = _created_metrics_dir
    # Also covers `gunicorn --check-config`, which loads this file but never calls on_exit.
    atexit.register(_remove_metrics_dir)

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


def on_starting(server):
    # Files left by an earlier run (same directory, dead pids) would be summed in forever.
    for path in glob.glob(os.path.join(os.environ[_METRICS_ENV], "*.db")):
        os.remove(path)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    # Drops the dead worker's live gauges; its counters stay, so totals never go backwards.
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    _remove_metrics_dir()
