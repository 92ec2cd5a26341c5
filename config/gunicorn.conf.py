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
import re
import shutil
import tempfile
import traceback

from gunicorn.glogging import Logger

from bridge import logs
from bridge.settings import load_dotenv

# Prometheus multiprocess mode: every worker writes its samples to files in this directory and
# `/metrics` (whichever worker answers) merges them. It must be set here, in the master, before
# any worker imports prometheus_client; a directory we create is removed when gunicorn exits.
# With USR2 binary upgrades the old master would remove the directory the new one still uses:
# set PROMETHEUS_MULTIPROC_DIR yourself there.
# A local run reads .env from the working directory (never overriding the real environment),
# as the meetbit-bridge command does; on a platform there is no .env and nothing happens.
load_dotenv()

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
# X-Forwarded-Proto decides the scheme of the URL that HubSpot signatures cover, so it is
# trusted only from the addresses the operator names (gunicorn's own default: loopback). Behind
# a platform router that is the only way in (e.g. Heroku), set FORWARDED_ALLOW_IPS="*".
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
accesslog = "-"
# The combined log format without what may carry credentials: the Basic user name (%(u)s; some
# senders put an API key there), the query string (%(r)s, %(q)s; tokens in URLs) and the
# Referer (%(f)s, the referring page's query). The path is the one sent (see AccessLogger).
access_log_format = '%(h)s %(l)s - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "-" "%(a)s"'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# Every logger of the master and of each worker (forked from it: they inherit this) writes to
# stderr in BRIDGE_LOG_FORMAT, json by default off a terminal; gunicorn's own two loggers get
# the same format in AccessLogger.setup. Without this, the bridge's INFO lines were dropped
# and its warnings printed bare (Python's last-resort handler).
logs.configure(level=loglevel)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Atoms a custom --access-logformat could name that hold credentials.
_SECRET_ATOM = re.compile(r"\{(.*authorization|.*cookie|query_string|raw_uri|request_uri)\}[ie]")


def _printable(text):
    # A log line is one line: control characters are shown as percent-escapes.
    return _CONTROL.sub(lambda m: f"%{ord(m.group()):02X}", text)


class AccessLogger(Logger):
    """gunicorn's logger, with the credential-bearing atoms redacted whatever the format says,
    and its lines in the bridge's format (JSON or text, see bridge/logs.py).

    %(U)s is otherwise PATH_INFO, decoded: `/hooks/x%0D%0Aforged` would write two log lines.
    Here it is the path as sent (still percent-encoded), and %(r)s is rebuilt without the query.
    """

    def setup(self, cfg):
        super().setup(cfg)
        logs.adopt(self.error_log.handlers + self.access_log.handlers)

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        # The same line, and its parts as fields (a JSON line is searched by field).
        request_id = atoms.get("{x-request-id}o")
        fields = {
            "method": atoms["m"],
            "path": atoms["U"],
            "status": int(atoms["s"]) if str(atoms["s"]).isdigit() else atoms["s"],
            "bytes": atoms["B"],
            "latency_ms": round(request_time.total_seconds() * 1000, 1),
            "remote_addr": atoms["h"],
        }
        try:
            # Bound, not passed in extra: a context field may not be set twice on a record.
            with logs.bound(request_id=request_id if request_id not in (None, "-") else None):
                self.access_log.info(
                    self.cfg.access_log_format, self.atoms_wrapper_class(atoms), extra=fields
                )
        except Exception:
            self.error(traceback.format_exc())

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        raw = environ.get("RAW_URI") or environ.get("PATH_INFO") or "-"
        path = _printable(raw.partition("?")[0])
        atoms.update(U=path, u="-", q="-", f="-", a=_printable(atoms.get("a") or "-"))
        atoms["r"] = f"{atoms['m']} {path} {atoms['H']}"
        for name in [name for name in atoms if _SECRET_ATOM.fullmatch(name)]:
            atoms[name] = "-"
        return atoms


logger_class = AccessLogger


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
