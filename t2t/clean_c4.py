"""Clean raw web-text JSONL into C4 the way the TFDS C4 builder does (rules: t2t/data/c4_cleaning.py).

    python -m t2t.clean_c4 --input RAW.jsonl[.gz] --output CLEAN.jsonl[.gz] [--badwords FILE]
                     [--no-dedupe | --dedupe-spans] [--no-lang-filter] [--no-clean] [--workers N]

Kept pages are written in input order with their cleaned `text` and every other field unchanged; the
output appears atomically (temporary file, then rename). Prints per-rule removed page and line counts
and the throughput in pages per second.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Iterable, Iterator

from t2t import fileio
from t2t.data import c4_cleaning as c4


def read_jsonl(path: str, text_key: str = "text") -> Iterator[dict]:
    """Streams JSON objects from a .jsonl or .jsonl.gz file, one line at a time; blank lines skipped."""
    for n, record in fileio.read_jsonl(path, required_keys=(text_key,), line_numbers=True):
        if not isinstance(record[text_key], str):
            raise ValueError(f"{path}:{n}: expected a string {text_key!r} field, "
                             f"got {type(record[text_key]).__name__}")
        yield record


def write_jsonl_atomic(path: str, records: Iterable[dict]) -> int:
    """Writes records to a temporary file beside `path`, then renames it into place; returns the count."""
    count = 0
    with fileio.atomic_open(path, make_parents=False) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def clean_file(input_path: str, output_path: str, config: c4.C4Config = c4.C4Config()) -> c4.C4Stats:
    """Cleans one JSONL file into another; returns the per-rule counts."""
    if os.path.abspath(input_path) == os.path.abspath(output_path):
        raise ValueError(f"--output {output_path} is the input file; write the cleaned pages elsewhere")
    stats = c4.C4Stats()
    pages = read_jsonl(input_path, config.text_key)
    write_jsonl_atomic(output_path, c4.clean_pages(pages, config, stats))
    return stats


def format_stats(stats: c4.C4Stats, config: c4.C4Config) -> str:
    """The per-rule report: pages and lines each rule removed, totals, throughput."""
    rows = [f"{'rule':<26} {'pages removed':>13} {'lines removed':>13}"]
    for rule in c4.RULE_ORDER:
        pages, lines = stats.pages_removed[rule], stats.lines_removed[rule]
        rows.append(f"{rule:<26} {pages:>13} {lines:>13}")
    rows.append(f"citation markers deleted from {stats.lines_edited['citation']} lines (lines kept)")
    off = [name for name, on in (("clean", config.clean), ("url_dedupe", config.url_dedupe),
                                 ("dedupe", config.dedupe), ("lang_filter", config.lang_filter),
                                 ("badwords", config.badwords_path)) if not on]
    if off:
        rows.append(f"switched off: {', '.join(off)}")
    rows.append(f"pages: {stats.pages_in} in, {stats.pages_out} out; "
                f"lines: {stats.lines_in} in, {stats.lines_out} out")
    rows.append(f"throughput: {stats.pages_per_second:.1f} pages/s "
                f"({stats.pages_in} pages in {stats.seconds:.2f} s)")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m t2t.clean_c4", description=__doc__.split("\n")[0])
    p.add_argument("--input", required=True, help="raw pages, JSONL or JSONL.gz with a text field")
    p.add_argument("--output", required=True, help="cleaned pages, JSONL (.gz compresses)")
    p.add_argument("--badwords", help="bad-words list, one word per line (without it that rule is off)")
    p.add_argument("--no-dedupe", action="store_true", help="skip cross-page line deduplication")
    p.add_argument("--dedupe-spans", action="store_true", help="dedupe 3-sentence spans (paper) not lines")
    p.add_argument("--no-lang-filter", action="store_true", help="skip the langdetect English filter")
    p.add_argument("--no-clean", action="store_true", help="skip the line rules (c4/en.noclean)")
    p.add_argument("--no-url-dedupe", action="store_true", help="keep pages that share a normalised URL")
    p.add_argument("--workers", type=int, default=1, help="processes (dedupe shards by hash)")
    args = p.parse_args(argv)
    if args.no_dedupe and args.dedupe_spans:
        p.error("--no-dedupe and --dedupe-spans contradict each other")
    config = c4.C4Config(
        clean=not args.no_clean, url_dedupe=not args.no_url_dedupe,
        dedupe=None if args.no_dedupe else ("spans" if args.dedupe_spans else "lines"),
        lang_filter=not args.no_lang_filter, badwords_path=args.badwords, num_workers=args.workers)
    if config.badwords_path is None:
        print("note: no --badwords list given, so the bad-words rule is off", file=sys.stderr)
    stats = clean_file(args.input, args.output, config)
    print(f"{args.input} -> {args.output}")
    print(format_stats(stats, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
