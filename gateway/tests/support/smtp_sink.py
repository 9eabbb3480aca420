"""A minimal SMTP server for the integration tests (Python standard library only).

Listens on 127.0.0.1 on a free port, prints the port on the first line of stdout,
then one JSON line per message received: envelope sender and recipients, and the
decoded Subject and body (RFC 2047 / transfer encodings undone by `email`).
No TLS, no AUTH: the server under test is configured with `security = "none"`.
"""

import asyncio
import email
import email.policy
import json
import sys


async def handle(reader, writer):
    def send(line):
        writer.write((line + "\r\n").encode())

    send("220 smtp-sink ready")
    await writer.drain()
    mail_from, rcpt = None, []
    while True:
        raw = await reader.readline()
        if not raw:
            break
        cmd = raw.decode("utf-8", "replace").rstrip("\r\n")
        up = cmd.upper()
        if up.startswith("EHLO"):
            writer.write(b"250-smtp-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
        elif up.startswith("HELO"):
            send("250 smtp-sink")
        elif up.startswith("MAIL FROM:"):
            mail_from, rcpt = cmd[10:].split()[0].strip("<>"), []
            send("250 OK")
        elif up.startswith("RCPT TO:"):
            rcpt.append(cmd[8:].split()[0].strip("<>"))
            send("250 OK")
        elif up == "DATA":
            send("354 end with <CRLF>.<CRLF>")
            await writer.drain()
            lines = []
            while True:
                line = await reader.readline()
                if not line or line in (b".\r\n", b".\n"):
                    break
                if line.startswith(b".."):
                    line = line[1:]
                lines.append(line)
            msg = email.message_from_bytes(b"".join(lines), policy=email.policy.default)
            body = msg.get_body(preferencelist=("plain",))
            print(
                json.dumps(
                    {
                        "from": mail_from,
                        "to": rcpt,
                        "subject": str(msg["subject"]),
                        "body": body.get_content() if body is not None else "",
                    }
                ),
                flush=True,
            )
            send("250 OK queued")
        elif up == "RSET":
            mail_from, rcpt = None, []
            send("250 OK")
        elif up == "NOOP":
            send("250 OK")
        elif up == "QUIT":
            send("221 bye")
            await writer.drain()
            break
        else:
            send("502 not implemented")
        await writer.drain()
    writer.close()


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
