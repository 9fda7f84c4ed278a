"""Mutation score per module from mutmut's results in mutants/ (run by `make mutants`).

    .venv/bin/python benchmarks/mutation_score.py            # the table
    .venv/bin/python benchmarks/mutation_score.py --survivors  # and every mutant not killed

score = killed / (total - skipped): a mutant no selected test reaches ("no tests"), one that
survives, times out or ends oddly ("suspicious") all count as not killed. mutmut's own exit-code
meanings are used (mutmut.stats.status_by_exit_code), so this follows mutmut's classification.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

KILLED = {"killed", "caught by type check"}


def load(root: Path) -> dict[str, dict[str, int | None]]:
    """{module path: {mutant name: exit code}} from every mutants/**/*.py.meta."""
    out = {}
    for meta in sorted((root / "mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if codes:
            out[str(meta.relative_to(root / "mutants"))[: -len(".meta")]] = codes
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--survivors", action="store_true", help="list every mutant not killed")
    ap.add_argument("--root", type=Path, default=Path("."))
    args = ap.parse_args(argv)
    results = load(args.root)
    if not results:
        print("no mutmut results under mutants/: run `make mutants` first", file=sys.stderr)
        return 1
    rows, total = [], Counter()
    for module, codes in results.items():
        status = Counter(status_by_exit_code[c] for c in codes.values())
        total.update(status)
        rows.append((module, status))
    rows.append(("all", total))
    header = f"{'module':<42} {'killed':>7} {'total':>6} {'score':>7}  not killed"
    print(header)
    print("-" * len(header))
    for module, status in rows:
        n = sum(status.values()) - status["skipped"]
        killed = sum(status[s] for s in KILLED)
        rest = ", ".join(f"{k} {v}" for k, v in sorted(status.items()) if k not in KILLED and v)
        score = f"{100 * killed / n:6.1f}%" if n else "    n/a"
        print(f"{module:<42} {killed:>7} {n:>6} {score}  {rest}")
    if args.survivors:
        print()
        for codes in results.values():
            for name, code in sorted(codes.items()):
                status = status_by_exit_code[code]
                if status not in KILLED:
                    print(f"{status:<12} {name}")
    not_checked = total["not checked"]
    if not_checked:
        print(f"\n{not_checked} mutants not checked yet (an interrupted run): run `make mutants` "
              "again to finish")
    return 0


if __name__ == "__main__":
    sys.exit(main())
