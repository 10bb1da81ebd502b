"""Sign a webhook the way real senders do, with their own libraries.

Usage: sign_webhook.py LIBRARY SECRET MSG_ID UNIX_TIMESTAMP < body
LIBRARY is `standardwebhooks` (headers webhook-id, webhook-timestamp, webhook-signature) or
`svix` (svix-id, svix-timestamp, svix-signature). Prints the headers to send as a JSON object.
"""

import json
import sys
from datetime import datetime, timezone


def main() -> None:
    library, secret, msg_id, ts = sys.argv[1:5]
    body = sys.stdin.read()
    when = datetime.fromtimestamp(int(ts), tz=timezone.utc)
    if library == "standardwebhooks":
        from standardwebhooks.webhooks import Webhook

        prefix = "webhook"
    elif library == "svix":
        from svix.webhooks import Webhook

        prefix = "svix"
    else:
        raise SystemExit(f"unknown library {library}")
    signature = Webhook(secret).sign(msg_id, when, body)
    # The library's own verifier accepts what it signed (a check on this script).
    Webhook(secret).verify(
        body,
        {f"{prefix}-id": msg_id, f"{prefix}-timestamp": ts, f"{prefix}-signature": signature},
    ) if abs(datetime.now(tz=timezone.utc).timestamp() - int(ts)) < 300 else None
    print(
        json.dumps(
            {
                f"{prefix}-id": msg_id,
                f"{prefix}-timestamp": ts,
                f"{prefix}-signature": signature,
            }
        )
    )


if __name__ == "__main__":
    main()
