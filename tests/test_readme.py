"""The README a newcomer reads: fences that open and close on their own lines, links that lead somewhere in a
clone, every `finops-agent` command it shows accepted by the CLI, and every YAML block a valid config fragment."""

from __future__ import annotations

import re
import shlex

import yaml

from agent import cli
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks() -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    out, lang, body, inside = [], "", [], False
    for line in README.splitlines():
        if line.startswith("```"):
            if inside:
                out.append((lang, "\n".join(body)))
                inside, body = False, []
            else:
                inside, lang = True, line[3:].strip()
        elif inside:
            body.append(line)
    assert not inside, "a fence is never closed"
    return out


def test_fences_stand_on_their_own_lines() -> None:
    for n, line in enumerate(README.splitlines(), 1):
        if "```" in line:
            assert re.fullmatch(r"```[a-z]*", line), f"README.md:{n}: {line!r}"
    _blocks()


def test_links_lead_to_files_of_the_repository() -> None:
    for target in re.findall(r"\]\(([^)#\s]+)", README):
        if re.match(r"https?://", target):
            continue
        assert not target.startswith(".."), f"{target}: outside a user's clone"
        assert (ROOT / target).exists(), target


def test_every_finops_agent_command_shown_parses() -> None:
    parser = cli.build_parser()
    seen = 0
    for lang, body in _blocks():
        if lang not in ("sh", ""):
            continue
        for cmd in body.replace("\\\n", " ").splitlines():
            cmd = cmd.removeprefix("$ ")
            if not re.match(r"\s*(\w+=\S*\s+)*(\S*/)?finops-agent\b", cmd):
                continue
            words = shlex.split(cmd, comments=True)
            while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value prefixes
                words.pop(0)
            if not words or not words[0].endswith("finops-agent"):
                continue
            words = words[: words.index("&&")] if "&&" in words else words
            parser.parse_args(words[1:])  # exits (fails the test) on an unknown option
            seen += 1
    assert seen >= 5


def test_yaml_blocks_are_yaml() -> None:
    blocks = [body for lang, body in _blocks() if lang == "yaml"]
    assert blocks
    for body in blocks:
        assert isinstance(yaml.safe_load(body), dict), body[:200]


def test_the_paging_example_is_a_config_validate_accepts() -> None:
    from agent.config import load_config_text

    section = README.split("## Paging and alert routing", 1)[1]
    body = section.split("```yaml\n", 1)[1].split("\n```", 1)[0]
    cfg = load_config_text(body, env={"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X"})
    assert {s.type for s in cfg.sinks.values()} >= {"pagerduty", "alertmanager", "slack", "teams"}
    assert cfg.route is not None and len(cfg.route.routes) == 2 and cfg.silences
