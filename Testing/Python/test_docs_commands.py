"""Every command the README and the docs/ pages show still works as written.

The fenced ```bash blocks of README.md and docs/*.md are read the way a shell would split them (backslash
line continuations joined, # comments dropped, environment-variable prefixes skipped, pipes and && split)
and each command is checked without running its work:

- ``echosynth ...`` (also ``python -m EchoSynthLib.cli.main ...`` and ``torchrun ... -m
  EchoSynthLib.cli.main ...``): its subcommand answers ``--help`` with exit status 0, every ``--flag`` the
  doc writes appears in that help, and the whole command line parses (choices, numbers, sizes). The CLI
  runs in this process, so this is quick.
- ``python SCRIPT.py ...`` and ``python -m MODULE ...`` (``bench/`` scripts, the batch script, the release):
  the script exists, ``--help`` exits 0 and lists every ``--flag`` the doc writes (a subprocess each).
- ``make TARGET``: the Makefile has the target.

``Slicer ...`` lines are skipped (they need a Slicer application), as are other programs (``tail``, ...).
A stale command fails naming the doc file and line.
"""

from __future__ import annotations

import argparse
import functools
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from EchoSynthLib.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
FENCE = re.compile(r"^\s*```\s*(\S*)")
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PYTHON = re.compile(r"(^|/)python(3(\.\d+)*)?$")
ECHOSYNTH = re.compile(r"(^|/)echosynth$")
CLI_MODULE = "EchoSynthLib.cli.main"
SEPARATORS = {"|", "||", "&&", ";", "&"}


@dataclass(frozen=True)
class Command:
    """One simple command of a doc's bash block: where it is, the line as written, the program's kind
    (``echosynth``, ``script``, ``module``, ``make``) and its arguments."""

    doc: str  # relative to the repository root
    line: int  # 1-based line of the command's first line
    text: str
    kind: str
    target: str  # the script path, module name or make target ('' for echosynth)
    args: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def bash_blocks(text: str):
    """(line number of the block's first line, its lines) for each fenced shell block of a Markdown text."""
    block, start = None, 0
    for number, line in enumerate(text.splitlines(), start=1):
        fence = FENCE.match(line)
        if fence and block is None:
            block, start, language = [], number + 1, fence.group(1).lower()
        elif fence:
            if language in SHELL_LANGUAGES:
                yield start, block
            block = None
        elif block is not None:
            block.append(line)


def logical_lines(first: int, lines: list[str]):
    """(line number, text) with backslash-newline continuations joined, as the shell joins them."""
    pending, at = "", first
    for number, line in enumerate(lines, start=first):
        if not pending:
            at = number
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        yield at, pending + line
        pending = ""
    if pending:
        yield at, pending


def split_command_line(text: str) -> list[list[str]]:
    """The simple commands of one shell line (pipes, &&, ; split; comments dropped)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    segments: list[list[str]] = [[]]
    for token in lexer:
        if token in SEPARATORS:
            segments.append([])
        else:
            segments[-1].append(token)
    return [segment for segment in segments if segment]


def classify(doc: str, line: int, text: str, tokens: list[str]) -> Command | None:
    """The command a doc's tokens run, or None for a program this test does not check."""
    while tokens and ASSIGNMENT.match(tokens[0]):  # ECHOSYNTH_THREADS=2 echosynth ...
        tokens = tokens[1:]
    if not tokens:
        return None
    program, rest = tokens[0], tokens[1:]

    def module_command(arguments: list[str]) -> Command | None:
        if "-m" not in arguments or arguments.index("-m") + 1 >= len(arguments):
            return None
        where = arguments.index("-m")
        module, after = arguments[where + 1], tuple(arguments[where + 2 :])
        if module == CLI_MODULE:
            return Command(doc, line, text, "echosynth", "", after)
        return Command(doc, line, text, "module", module, after)

    if ECHOSYNTH.search(program):
        return Command(doc, line, text, "echosynth", "", tuple(rest))
    if program == "torchrun":
        return module_command(rest)
    if PYTHON.search(program):
        if rest and rest[0] == "-m":
            return module_command(rest)
        scripts = [token for token in rest if token.endswith(".py")]
        if scripts:
            after = rest[rest.index(scripts[0]) + 1 :]
            return Command(doc, line, text, "script", scripts[0], tuple(after))
        return None
    if program == "make":
        targets = [token for token in rest if not token.startswith("-") and "=" not in token]
        return Command(doc, line, text, "make", targets[0] if targets else "", ())
    return None  # Slicer, tail, ... : not checked here


def commands_in(path: Path) -> list[Command]:
    """Every checked command of a Markdown file's shell blocks, in order."""
    doc = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    return commands_in_text(path.read_text(encoding="utf-8"), doc)


def commands_in_text(markdown: str, doc: str) -> list[Command]:
    found = []
    for first, lines in bash_blocks(markdown):
        for line, text in logical_lines(first, lines):
            if re.search(r"(^|[\s($|;&])Slicer(\s|$)", text):
                continue  # needs a Slicer application
            try:
                segments = split_command_line(text)
            except ValueError as error:  # unbalanced quotes: a broken doc line
                raise AssertionError(f"{doc}:{line}: cannot split `{text.strip()}`: {error}") from None
            for tokens in segments:
                command = classify(doc, line, " ".join(text.split()), tokens)
                if command is not None:
                    found.append(command)
    return found


ALL_COMMANDS = [command for doc in DOCS for command in commands_in(doc)]


def _of_kind(*kinds: str) -> list:
    return [
        pytest.param(c, id=f"{c.where} {c.kind} {c.target}".strip()) for c in ALL_COMMANDS if c.kind in kinds
    ]


def flags_of(args) -> list[str]:
    """The --long options a command line writes (values after '=' dropped)."""
    return [token.split("=", 1)[0] for token in args if token.startswith("--") and len(token) > 2]


def flag_in(flag: str, help_text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text) is not None


def _subparsers(parser: argparse.ArgumentParser):
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def subcommand_of(args) -> tuple[list[str], str | None]:
    """The subcommand path of an ``echosynth`` command line (``['models', 'download']``), or a problem."""
    parser, path = build_parser(), []
    while (commands := _subparsers(parser)) is not None:
        position = len(path)
        if position >= len(args) or args[position] not in commands.choices:
            named = args[position] if position < len(args) else "nothing"
            known = ", ".join(commands.choices)
            return path, f"no subcommand '{named}' in `{' '.join(['echosynth', *path])}` (known: {known})"
        path.append(args[position])
        parser = commands.choices[args[position]]
    return path, None


def echosynth_problems(command: Command, capsys) -> list[str]:
    """Why a doc's ``echosynth`` command is stale (empty when it is not): a missing subcommand, a --help
    that fails, a flag the help does not list, or a command line the parser refuses."""
    shown = f"{command.where}: `{command.text}`"
    path, problem = subcommand_of(command.args)
    if problem:
        return [f"{shown}: {problem}"]
    capsys.readouterr()
    status = main([*path, "--help"])
    captured = capsys.readouterr()
    name = " ".join(["echosynth", *path, "--help"])
    if status != 0:
        return [f"{shown}: `{name}` exited {status}: {captured.err.strip()}"]
    problems = [
        f"{shown}: {flag} is not in `{name}`"
        for flag in flags_of(command.args[len(path) :])
        if not flag_in(flag, captured.out)
    ]
    if not problems:
        try:
            build_parser().parse_args(list(command.args))
        except SystemExit as stop:
            refused = capsys.readouterr().err.strip()
            if stop.code:
                problems.append(f"{shown}: the command line does not parse: {refused}")
    capsys.readouterr()
    return problems


@functools.cache
def help_of(kind: str, target: str) -> tuple[int, str]:
    """Exit status and output of ``python SCRIPT --help`` or ``python -m MODULE --help``, run in the root."""
    program = [target] if kind == "script" else ["-m", target]
    done = subprocess.run(
        [sys.executable, *program, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    return done.returncode, done.stdout + done.stderr


def script_problems(command: Command) -> list[str]:
    shown = f"{command.where}: `{command.text}`"
    if command.kind == "script" and not (ROOT / command.target).is_file():
        return [f"{shown}: no script {command.target}"]
    status, output = help_of(command.kind, command.target)
    name = f"python {'-m ' if command.kind == 'module' else ''}{command.target} --help"
    if status != 0:
        return [f"{shown}: `{name}` exited {status}: {output.strip()[-500:]}"]
    return [
        f"{shown}: {flag} is not in `{name}`" for flag in flags_of(command.args) if not flag_in(flag, output)
    ]


def test_the_docs_show_commands_and_the_readme_starts_with_make_demo_and_make_test():
    """CI and newcomers read the README's first two commands: `make demo`, then `make test`."""
    readme = [c for c in ALL_COMMANDS if c.doc == "README.md"]
    assert [(c.kind, c.target) for c in readme[:2]] == [("make", "demo"), ("make", "test")], readme[:2]
    assert sum(c.kind == "echosynth" for c in ALL_COMMANDS) >= 20, "the extractor found too few commands"


@pytest.mark.parametrize("command", _of_kind("echosynth"))
def test_each_documented_echosynth_command_exists_with_its_flags(command, capsys):
    problems = echosynth_problems(command, capsys)
    assert not problems, "stale command in the docs:\n" + "\n".join(problems)


@pytest.mark.parametrize("command", _of_kind("script", "module"))
def test_each_documented_script_exists_and_takes_its_flags(command):
    problems = script_problems(command)
    assert not problems, "stale command in the docs:\n" + "\n".join(problems)


@pytest.mark.parametrize("command", _of_kind("make"))
def test_each_documented_make_target_exists(command):
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^{re.escape(command.target)}\s*:", makefile, re.MULTILINE), (
        f"{command.where}: `{command.text}`: the Makefile has no target '{command.target}'"
    )


def test_the_extractor_reads_commands_as_the_shell_would():
    markdown = "\n".join(
        [
            "text",
            "```bash",
            "echosynth synthesize --model simulator \\",
            "    --labels maps/ --out out/ --n 4   # a comment --not-a-flag",
            "# echosynth commented --out x",
            "ECHOSYNTH_THREADS=2 OMP_NUM_THREADS=1 echosynth models download NAME --accept-licence",
            "echosynth models list | tail -n 3 && .venv/bin/python bench/sdm_speed.py --sizes 64",
            "torchrun --standalone --nproc_per_node 4 -m EchoSynthLib.cli.main train sdm --data d --out r",
            'SCRIPT=$(Slicer --no-main-window --python-code "print(1)" | tail -n 1)',
            'Slicer --no-main-window --python-script "$SCRIPT" --model simulator',
            "python -m EchoSynthLib.release --out dist",
            "make demo",
            "```",
            "```python",
            "echosynth not-shell --out x",
            "```",
        ]
    )
    found = [(c.line, c.kind, c.target, c.args) for c in commands_in_text(markdown, "doc.md")]
    assert found == [
        (
            3,
            "echosynth",
            "",
            ("synthesize", "--model", "simulator", "--labels", "maps/", "--out", "out/", "--n", "4"),
        ),
        (6, "echosynth", "", ("models", "download", "NAME", "--accept-licence")),
        (7, "echosynth", "", ("models", "list")),
        (7, "script", "bench/sdm_speed.py", ("--sizes", "64")),
        (8, "echosynth", "", ("train", "sdm", "--data", "d", "--out", "r")),
        (11, "module", "EchoSynthLib.release", ("--out", "dist")),
        (12, "make", "demo", ()),
    ]


def test_a_renamed_flag_or_subcommand_fails_naming_the_doc_and_line(capsys):
    markdown = "\n".join(
        [
            "```bash",
            "echosynth synthesize --model simulator --labels maps/ --out out/ --bogus-flag 3",
            "echosynth models fetch NAME",
            "echosynth synthesize --model simulator --labels maps/ --out out/ --n zero",
            "echosynth synthesize --model simulator --labels maps/ --out out/ --n 2",
            "```",
        ]
    )
    bogus, missing, unparsable, good = commands_in_text(markdown, "docs/X.md")
    assert echosynth_problems(bogus, capsys) == [
        f"docs/X.md:2: `{bogus.text}`: --bogus-flag is not in `echosynth synthesize --help`"
    ]
    assert echosynth_problems(missing, capsys)[0].startswith(
        "docs/X.md:3: `echosynth models fetch NAME`: no subcommand 'fetch'"
    )
    assert "does not parse" in echosynth_problems(unparsable, capsys)[0]
    assert echosynth_problems(good, capsys) == []
    script = commands_in_text("```bash\npython bench/no_such_script.py --x 1\n```", "docs/X.md")[0]
    assert script_problems(script) == [
        "docs/X.md:2: `python bench/no_such_script.py --x 1`: no script bench/no_such_script.py"
    ]


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def anchors_of(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file (lower case, punctuation dropped, spaces to hyphens)."""
    anchors: set[str] = set()
    inside_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            inside_code = not inside_code
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading and not inside_code:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            candidate, n = slug, 0
            while candidate in anchors:
                n += 1
                candidate = f"{slug}-{n}"
            anchors.add(candidate)
    return anchors


@pytest.mark.parametrize("doc", [pytest.param(d, id=d.relative_to(ROOT).as_posix()) for d in DOCS])
def test_the_docs_links_point_at_files_and_headings_that_exist(doc):
    broken = []
    inside_code = False
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(line):
            inside_code = not inside_code
        if inside_code:
            continue
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto:
            file_part, _, anchor = target.partition("#")
            linked = (doc.parent / file_part).resolve() if file_part else doc
            if not linked.exists():
                broken.append(f"{doc.relative_to(ROOT)}:{number}: {target}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in anchors_of(linked):
                broken.append(f"{doc.relative_to(ROOT)}:{number}: {target}: no such heading")
    assert not broken, "broken links:\n" + "\n".join(broken)
