"""`studio arena`: build a preference campaign, report on it, export its votes.

    studio arena build --contenders A B C --prompts FILE --seeds K --out DIR [--sampler S --steps N --guidance G]
    studio arena report --campaign DIR [--json PATH] [--markdown PATH] [--html PATH]
    studio arena export --campaign DIR --out PATH.jsonl|.csv
    studio arena status --campaign DIR
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "arena", help="blind side-by-side preference campaigns: build, report, export",
        description="Blind side-by-side preference campaigns (see docs/arena.md). Voting happens in the app.",
    )
    sub = parser.add_subparsers(dest="arena_command", metavar="ARENA_COMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])

    from studio.arena.campaign import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS

    build = sub.add_parser(
        "build", help="create a campaign and pre-render every contender's images",
        description="Create (or extend) a campaign in DIR: every contender renders every prompt with every seed "
                    "to DIR/images, so voting is instant and reproducible. Re-running resumes.",
    )
    build.add_argument("--contenders", nargs="+", required=True, metavar="MODEL",
                       help="model folders or preset names, each optionally MODEL@steps=N,sampler=S,guidance=G,name=T")
    build.add_argument("--prompts", required=True, metavar="FILE", help=".txt (one per line), .json list or .jsonl")
    build.add_argument("--seeds", type=int, default=1, metavar="K", help="seeds 0..K-1 per prompt (default 1)")
    build.add_argument("--out", required=True, metavar="DIR", help="campaign directory")
    build.add_argument("--sampler", default=DEFAULT_SAMPLER, help=f"default sampler (default {DEFAULT_SAMPLER})")
    build.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"default steps (default {DEFAULT_STEPS})")
    build.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE,
                       help=f"default guidance scale (default {DEFAULT_GUIDANCE:g})")
    build.add_argument("--batch-size", type=int, default=8, help="images per renderer call (default 8)")
    build.add_argument("--max-votes-per-rater", type=int, default=None, metavar="N", help="per-rater cap")
    build.add_argument("--name", default=None, help="campaign name (default: the directory name)")
    build.add_argument("--live", action="store_true",
                       help="render nothing now: battles are rendered on demand while raters vote")
    build.set_defaults(func=_build)

    report = sub.add_parser(
        "report", help="ratings, pairwise preference, agreement",
        description="Bradley–Terry ratings with bootstrap intervals, pairwise preference with Wilson intervals and "
                    "exact sign tests, rater agreement. Prints Markdown; writes JSON/Markdown/HTML on request.",
    )
    source = report.add_mutually_exclusive_group(required=True)
    source.add_argument("--campaign", metavar="DIR", help="campaign directory")
    source.add_argument("--votes", metavar="FILE", help="a vote export (.jsonl or .csv) instead of a campaign")
    report.add_argument("--json", metavar="PATH", help="write the report as JSON")
    report.add_argument("--markdown", metavar="PATH", help="write the report as Markdown")
    report.add_argument("--html", metavar="PATH", help="write the report with its figures as HTML")
    report.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    report.add_argument("--ties", choices=("davidson", "half"), default="davidson",
                        help="tie model for the ratings (default davidson)")
    report.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    report.add_argument("--quiet", action="store_true", help="do not print the Markdown report")
    report.set_defaults(func=_report)

    export = sub.add_parser("export", help="write every vote to JSONL or CSV (fields: docs/arena.md)")
    export.add_argument("--campaign", required=True, metavar="DIR", help="campaign directory")
    export.add_argument("--out", required=True, metavar="PATH", help="output file, .jsonl or .csv")
    export.set_defaults(func=_export)

    status = sub.add_parser("status", help="counts of contenders, battles, raters and votes")
    status.add_argument("--campaign", required=True, metavar="DIR", help="campaign directory")
    status.set_defaults(func=_status)


def _build(args: argparse.Namespace) -> int:
    from studio.arena.campaign import build_campaign, read_prompts, resolve_contenders
    from studio.cli import CLIError

    if args.seeds < 1:
        raise CLIError("--seeds must be at least 1")
    if args.batch_size < 1:
        raise CLIError("--batch-size must be at least 1")
    contenders = resolve_contenders(args.contenders, sampler=args.sampler, steps=args.steps, guidance=args.guidance)
    prompts = read_prompts(args.prompts)
    campaign = build_campaign(args.out, contenders, prompts, args.seeds, live=args.live, batch_size=args.batch_size,
                              max_votes_per_rater=args.max_votes_per_rater, name=args.name)
    s = campaign.summary()
    mode = "live (rendered on demand)" if args.live else f"{s['images']} images, {s['battles']} battles"
    print(f"campaign {s['name']!r} in {args.out}: {s['contenders']} contenders, {s['prompts']} prompts, "
          f"{len(s['seeds'])} seeds, {mode}")
    for c in campaign.contenders().values():
        print(f"  {c.key}  {c.display_name}  ({c.model}, {c.sampler}, {c.steps} steps, guidance {c.guidance:g})")
    campaign.close()
    return 0


def _report(args: argparse.Namespace) -> int:
    from studio.arena.report import build_report

    if not (args.campaign or args.votes):  # argparse accepts an empty string for either
        from studio.cli import CLIError

        raise CLIError("give a campaign folder (--campaign DIR) or a vote export (--votes FILE), not an empty path")
    if args.campaign:
        from studio.arena.campaign import Campaign

        campaign = Campaign.open(args.campaign)
        rep = campaign.report(ties=args.ties, n_bootstrap=args.bootstrap, seed=args.seed)
        campaign.close()
    else:
        from studio.arena.store import load_export

        rep = build_report(load_export(args.votes), ties=args.ties, n_bootstrap=args.bootstrap, seed=args.seed)
    written = rep.write(json_path=args.json, markdown_path=args.markdown, html_path=args.html)
    if not args.quiet:
        print(rep.to_markdown())
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from studio.arena.campaign import Campaign

    campaign = Campaign.open(args.campaign)
    n = len(campaign.votes())
    path = campaign.export(args.out)
    campaign.close()
    print(f"wrote {n} votes to {path}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from studio.arena.campaign import Campaign

    campaign = Campaign.open(args.campaign)
    for key, value in campaign.summary().items():
        print(f"{key}: {value}")
    campaign.close()
    return 0
