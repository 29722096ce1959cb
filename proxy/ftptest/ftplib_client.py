"""Drives Python's ftplib.FTP_TLS through ftpsgate for the integration tests.

Usage: python3 ftplib_client.py SPEC_JSON
The spec names the server, the credentials and a list of steps; the script
prints one JSON object with each step's result and exits non-zero on the
first failure, with the reason on stderr.
"""
import ftplib
import hashlib
import io
import json
import socket
import ssl
import sys


class ReusingFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS
    session, as ftpsgate (and vsftpd, ProFTPD, FileZilla Server) require.
    The stock class never does (cpython issue 63699). The README shows
    this class to users."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


class ImplicitFTP_TLS(ReusingFTP_TLS):
    """FTP_TLS for implicit FTPS: TLS from the first byte."""

    def connect(self, host="", port=0, timeout=-999, source_address=None):
        if host:
            self.host = host
        if port > 0:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
        self.sock = socket.create_connection((self.host, self.port), self.timeout)
        self.af = self.sock.family
        self.sock = self.context.wrap_socket(self.sock, server_hostname=self.host)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def main():
    spec = json.loads(sys.argv[1])
    ctx = ssl.create_default_context(cafile=spec["cafile"])
    if spec.get("certfile"):
        ctx.load_cert_chain(spec["certfile"], spec["keyfile"])
    if spec.get("implicit"):
        cls = ImplicitFTP_TLS
    elif spec.get("stock"):
        cls = ftplib.FTP_TLS
    else:
        cls = ReusingFTP_TLS
    ftp = cls(context=ctx, timeout=60)
    ftp.connect(spec["host"], spec["port"])
    if spec.get("server_name"):
        # The name TLS verifies (and sends as SNI) from here on: ftplib
        # uses self.host for it; data connections go to the control
        # connection's peer address, not to self.host.
        ftp.host = spec["server_name"]
    out = {"welcome": ftp.welcome, "steps": []}
    if spec.get("login", True):
        ftp.login(spec["user"], spec["password"])  # sends AUTH TLS first
        ftp.prot_p()
    if spec.get("active"):
        ftp.set_pasv(False)  # PORT (EPRT over IPv6): the server connects to us
    for step in spec.get("steps", []):
        res = {"op": step["op"]}
        if step.get("may_fail"):
            # A transfer the server is expected to refuse: record the
            # client-side error and the server's final reply.
            try:
                run_step(ftp, step, res)
            except (OSError, EOFError, ftplib.Error) as e:
                res["error"] = "%s: %s" % (type(e).__name__, e)
                if not isinstance(e, ftplib.Error):
                    try:
                        res["reply"] = ftp.getresp()
                    except ftplib.Error as e2:
                        res["reply"] = str(e2)
                else:
                    res["reply"] = str(e)
        else:
            run_step(ftp, step, res)
        out["steps"].append(res)
    out["quit"] = ftp.quit()
    print(json.dumps(out))


def run_step(ftp, step, res):
    op = step["op"]
    if op == "upload":
        data = open(step["local"], "rb").read()
        if "rest" in step:
            data = data[step["rest"]:]
        res["reply"] = ftp.storbinary("STOR " + step["remote"], io.BytesIO(data), rest=step.get("rest"))
    elif op == "append":
        data = open(step["local"], "rb").read()
        res["reply"] = ftp.storbinary("APPE " + step["remote"], io.BytesIO(data))
    elif op == "stou":
        data = open(step["local"], "rb").read()
        res["reply"] = ftp.storbinary("STOU", io.BytesIO(data))
    elif op == "download":
        buf = io.BytesIO()
        res["reply"] = ftp.retrbinary("RETR " + step["remote"], buf.write, rest=step.get("rest"))
        res["sha256"] = sha256(buf.getvalue())
        res["size"] = len(buf.getvalue())
    elif op == "list":
        lines = []
        res["reply"] = ftp.retrlines("LIST", lines.append)
        res["lines"] = lines
    elif op == "nlst":
        res["names"] = ftp.nlst()
    elif op == "mlsd":
        res["entries"] = {name: facts for name, facts in ftp.mlsd()}
    elif op == "cmd":
        try:
            res["reply"] = ftp.sendcmd(step["line"])
        except ftplib.Error as e:
            res["reply"] = str(e)
    else:
        raise SystemExit("unknown op " + op)


if __name__ == "__main__":
    main()
