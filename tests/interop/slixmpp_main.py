"""What the slixmpp interop scripts share: progress lines and a bounded main.

The scripts run as subprocesses (``python tests/interop/NAME.py ...``), so
they import this module from their own folder.
"""

import asyncio


def starttls_only(client, ca_cert):
    """Make a slixmpp client use STARTTLS with that CA (no direct TLS, no plaintext)."""
    client.ca_certs = ca_cert
    client.enable_direct_tls = False
    client.enable_starttls = True
    client.enable_plaintext = False


def report(line):
    """One progress line on stdout."""
    print(line, flush=True)


def run(scenario, argv, time_limit):
    """Run ``scenario(host, port, ca_cert, jid1, password1, jid2, password2)``.

    Exit code 0 on success, 1 when it takes longer than ``time_limit``
    seconds, 2 when it raises PermissionError (authentication failed).
    """
    host, port, ca_cert, jid1, password1, jid2, password2 = argv
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(
            asyncio.wait_for(
                scenario(host, int(port), ca_cert, jid1, password1, jid2, password2), time_limit
            )
        )
    except TimeoutError:
        report("timeout")
        return 1
    except PermissionError:
        return 2
    finally:
        _close(loop)
    return 0


def _close(loop):
    """Cancel what the clients left running and close the loop before the process exits.

    A client refused at authentication leaves its partner's connection and
    tasks running; the interpreter must not tear them down itself at exit.
    """
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
