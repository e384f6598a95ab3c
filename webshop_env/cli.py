"""``mem1 webshop ...``: serve the WebShop site.

``mem1 webshop serve --port 3000 --num-products 1000`` serves the synthetic
catalog on http://127.0.0.1:3000 until interrupted; open ``/`` in a browser for
a fresh session, or ``/fixed_<n>`` to play goal ``n`` of the split.
"""

from __future__ import annotations

import argparse
import sys

from .site import GOAL_SPLITS, Site, SiteConfig
from mem1_http import check_port
from .server import WebShopServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mem1 webshop", description="The WebShop simulator's web site.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the site over HTTP")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve.add_argument("--port", type=int, default=3000, help="port (0 picks a free one)")
    serve.add_argument("--num-products", type=int, default=1000, help="synthetic catalog size")
    serve.add_argument("--catalog", default=None, help="WebShop product JSON to serve instead")
    serve.add_argument("--attributes", default=None, help="WebShop attribute JSON for --catalog")
    serve.add_argument("--human-goals", default=None, help="WebShop human instruction JSON (plays human goals)")
    serve.add_argument("--split", default="test", choices=GOAL_SPLITS, help="goal split the sessions play")
    serve.add_argument("--seed", type=int, default=0, help="seed of the synthetic catalog and goals")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def cli(argv: list[str]) -> int:
    """Run ``mem1 webshop`` with ``argv``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        check_port(args.port)
    except ValueError as err:
        print(f"mem1 webshop serve: {err}", file=sys.stderr)
        return 2
    config = SiteConfig(
        num_products=args.num_products, catalog_path=args.catalog, attributes_path=args.attributes,
        human_goals_path=args.human_goals, human_goals=args.human_goals is not None,
        goal_split=args.split, catalog_seed=args.seed,
    )
    try:
        print(f"building the site ({args.num_products} products)..." if args.catalog is None else f"loading {args.catalog}...", flush=True)
        site = Site.from_config(config)
        server = WebShopServer(site, host=args.host, port=args.port, verbose=args.verbose)
    except (OSError, ValueError) as err:
        print(f"mem1 webshop serve: {err}", file=sys.stderr)
        return 1
    server.serve_until_interrupted(f"serving {len(site.goals)} {args.split} goals at {server.url}/  (Ctrl-C to stop)")
    return 0
