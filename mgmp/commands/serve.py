"""``mgmp serve MODEL``: expose a model as the HTTP JSON API that ``endpoint:URL`` suspects speak."""
from __future__ import annotations

import sys

from model_pool.pool import load_ref
from model_pool.serve import serve_model, serve_until_interrupted

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def run(args) -> dict:
    """Load ``args.model``, serve it until Ctrl-C, and return what was served where."""
    model, _ = load_ref(args.model)
    host = args.host
    server = serve_model(model, host, args.port, labels_only=args.labels_only, output=args.output)
    if host not in LOOPBACK:
        print(f"warning: {host} is reachable from other machines; the API has no authentication", file=sys.stderr)
    print(f"serving {args.model} on {server.url} ({server.output}); Ctrl-C stops", file=sys.stderr, flush=True)
    serve_until_interrupted(server)
    return {"model": args.model, "url": server.url, "output": server.output}
