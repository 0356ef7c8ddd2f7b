"""A real SMTP server for vigil's e-mail tests (aiosmtpd): saves each message as <n>.eml with its
envelope in <n>.json; optional STARTTLS (required), AUTH, and rejection of every message."""
import argparse
import asyncio
import json
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--dir", required=True)
p.add_argument("--reject", help="answer DATA with this SMTP reply, e.g. '550 5.7.1 no'")
p.add_argument("--cert")
p.add_argument("--key")
p.add_argument("--auth", help="user:password required")
a = p.parse_args()


class Handler:
    count = 0

    async def handle_DATA(self, server, session, envelope):
        if a.reject:
            return a.reject
        Handler.count += 1
        base = os.path.join(a.dir, str(Handler.count))
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(base + ".json", "w") as f:
            json.dump({
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "tls": session.ssl is not None,
                "auth": getattr(session, "vigil_user", None),
            }, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    user, password = a.auth.split(":", 1)
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password
    if ok:
        session.vigil_user = user
    return AuthResult(success=ok)


kwargs = {}
if a.cert:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    kwargs.update(tls_context=ctx, require_starttls=True)
if a.auth:
    kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=bool(a.cert))
c = Controller(Handler(), hostname="127.0.0.1", port=a.port, **kwargs)
c.start()
print("READY", flush=True)
try:
    sys.stdin.read()  # runs until the test closes stdin or kills it
finally:
    c.stop()
