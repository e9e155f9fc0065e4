"""Servers on 127.0.0.1 for the object-storage tests and the remote benchmark case.

nginx (Debian ``nginx-light``) serves a folder with range requests, run in the
foreground with its pid file, logs and temp paths under its own folder. Its
access log has one line per request: ``URI<TAB>Range<TAB>status<TAB>bytes sent``
(see :func:`Nginx.requests`).
"""

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
GUARD_SECONDS = 120  # only to stop a hung server; nothing measures time with it
SYNC_URI = "/.log-sync-"  # marker requests of :meth:`Nginx.requests`, left out of its answer
LOG_FORMAT = "'$request_method\\t$request_uri\\t$http_range\\t$status\\t$bytes_sent'"


def free_port():
    """A TCP port nobody listens on at 127.0.0.1 (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(port, proc):
    """Wait until something accepts connections on ``port``; fail if ``proc`` exits."""
    deadline = time.monotonic() + GUARD_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no server on 127.0.0.1:{port}")


def stop(proc):
    """Terminate a server process (kill it after 10 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Nginx:
    """nginx serving ``root/data`` on 127.0.0.1:PORT, ``/secret/`` denied (403).

    Parameters
    ----------
    root : str or path
        An empty folder for the configuration, logs, temp paths and ``data``.
    """

    def __init__(self, root):
        self.root, self.data, self.port = str(root), os.path.join(root, "data"), free_port()
        self.log = os.path.join(self.root, "access.log")
        os.makedirs(os.path.join(self.data, "secret"))
        temp = os.path.join(self.root, "temp")
        os.makedirs(temp)
        with open(os.path.join(self.root, "nginx.conf"), "w", encoding="utf-8") as fh:
            fh.write(
                f"daemon off; worker_processes 1; pid {root}/nginx.pid; "
                f"error_log {root}/error.log;\n"
                # As root the workers would run as nobody, who cannot read private folders.
                + ("user root;\n" if os.geteuid() == 0 else "")
                + "events { worker_connections 256; }\nhttp {\n"
                f"  log_format calls {LOG_FORMAT};\n"
                f"  access_log {self.log} calls;\n"
                + "".join(f"  {k}_temp_path {temp}/{k};\n"
                          for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
                + f"  server {{ listen 127.0.0.1:{self.port}; root {self.data};\n"
                "    location /secret/ { deny all; } }\n}\n")
        self.proc = None
        self._marks = 0

    @classmethod
    def available(cls):
        """True when the nginx binary is installed."""
        return os.path.exists(NGINX)

    def start(self):
        """Start nginx and wait until it accepts connections."""
        self.proc = subprocess.Popen([NGINX, "-e", f"{self.root}/error.log", "-p", self.root,
                                      "-c", f"{self.root}/nginx.conf"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_up(self.port, self.proc)
        return self

    def stop(self):
        """Stop nginx (started by :meth:`start`)."""
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def url(self, name):
        """The http:// URL of ``name`` under the served folder."""
        return f"http://127.0.0.1:{self.port}/{name}"

    def requests(self):
        """Every request logged so far: dicts with method, uri, range (None when the
        request had none), status and bytes (sent, headers included).

        nginx logs a request after answering it: a marker request, waited for in the
        log, makes sure the requests answered before are all there.
        """
        self._marks += 1
        marker = f"{SYNC_URI}{self._marks}"
        try:
            urllib.request.urlopen(self.url(marker.lstrip("/")), timeout=GUARD_SECONDS)
        except urllib.error.HTTPError:
            pass  # 404, logged all the same
        deadline = time.monotonic() + GUARD_SECONDS
        while True:
            rows = self._logged()
            if any(r["uri"] == marker for r in rows) or time.monotonic() > deadline:
                return [r for r in rows if not r["uri"].startswith(SYNC_URI)]
            time.sleep(0.01)

    def _logged(self):
        if not os.path.exists(self.log):
            return []
        rows = []
        with open(self.log, encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break  # being written
                method, uri, rng, status, sent = line.rstrip("\n").split("\t")
                rows.append({"method": method, "uri": uri,
                             "range": None if rng in ("", "-") else rng,
                             "status": int(status), "bytes": int(sent)})
        return rows

    def clear_log(self):
        """Forget the requests logged so far (nginx keeps appending to the same file)."""
        if os.path.exists(self.log):
            os.truncate(self.log, 0)
