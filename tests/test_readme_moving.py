"""The README's "Moving clients to a new destination" runs as written: every command of it,
in order, against a sandbox serving what its ``existing.json`` holds, prints the lines the
README shows (times, dates, tokens and the new connections' ids aside) and ends as shown."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx

from batch_provisioner.sandbox import SandboxHandle, run_in_thread

ROOT = Path(__file__).resolve().parents[1]
SECTION = (ROOT / "README.md").read_text(encoding="utf-8").split(
    "## Moving clients to a new destination\n", 1)[1].split("\n## ", 1)[0]
URL = "http://127.0.0.1:8765"
_VOLATILE = [(re.compile(r"[0-9]+\.[0-9]+ s\b"), "<s>"),
             (re.compile(r"20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]+Z"), "<time>"),
             (re.compile(r"auth=[A-Za-z0-9_.\-]+…?"), "auth=<token>")]


def blocks() -> list[list[str]]:
    """The lines of each plain code block (the sh block at the end is a script: run apart)."""
    return [b.splitlines() for b in re.findall(r"```\n(.*?)```", SECTION, flags=re.DOTALL)]


def steps() -> list[tuple[str, list[str]]]:
    """(command, the output lines the README shows for it), in order."""
    found: list[tuple[str, list[str]]] = []
    for lines in blocks():
        for line in lines:
            if line.startswith("$ "):
                found.append((line[2:], []))
            elif found:
                found[-1][1].append(line)
    return found


def normalised(text: str, ids: dict[str, str]) -> str:
    for pattern, placeholder in _VOLATILE:
        text = pattern.sub(placeholder, text)
    for written, placeholder in ids.items():
        text = text.replace(written, placeholder)
    return text


def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    commands = steps()
    existing = "\n".join(commands[0][1])
    (tmp_path / "existing.json").write_text(existing, encoding="utf-8")
    serve = shlex.split(commands[1][0])
    groups = dict(serve[i + 1].split("=", 1) for i, word in enumerate(serve) if word == "--group")
    # The new connections' ids follow the order their creates arrived in: each side's ids
    # are read as the placeholder of their schema (the README's from its results.csv lines).
    written = {cid: f"<{schema}>" for schema, cid in re.findall(
        r"^(tiktok_[a-z_]+),([a-z]+_[a-z]+),incomplete,", SECTION, flags=re.M)}
    made: dict[str, str] = {}
    with run_in_thread(groups=groups, connections=json.loads(existing)) as box:
        for command, shown in commands[2:]:
            if command.startswith("for id in"):  # the clients complete their connect cards
                real = {placeholder: cid for cid, placeholder in made.items()}
                for cid in command.split(" in ", 1)[1].split(";", 1)[0].split():
                    box.authorize(real[written[cid]])
                continue
            done = _shell(command.replace(URL, box.url), tmp_path)
            if not made and _in_group(box, "brave_meadow"):
                made = {str(c["id"]): f"<{c['schema']}>" for c in _in_group(box, "brave_meadow")}
            actual = normalised(done.stdout.replace(box.url, URL), made)
            for line in shown:
                assert normalised(line, written) in actual, (command, line, actual)
            expected = next((int(m.group(1)) for line in shown
                             if (m := re.match(r"exit code ([0-9]+)", line))), 0)
            assert done.returncode == expected, (command, done.stdout + done.stderr)
        assert len(made) == 3 and all(c["paused"] for c in _in_group(box, "warm_sunset"))


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "PYTHONPATH": str(ROOT),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    for name in ("FIVETRAN_API_KEY", "FIVETRAN_API_SECRET", "FIVETRAN_API_URL"):
        env.pop(name, None)
    done = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_the_deletion_script_deletes_the_old_connections(tmp_path: Path) -> None:
    script = re.search(r"```sh\n(.*?)```", SECTION, flags=re.DOTALL)
    assert script is not None
    seeds = json.loads("\n".join(steps()[0][1]))
    with run_in_thread(groups={"warm_sunset": "Snowflake EU"}, connections=seeds) as box:
        env = {**os.environ, "FIVETRAN_API_KEY": box.api_key, "PYTHONPATH": str(ROOT),
               "FIVETRAN_API_SECRET": box.config.api_secret,
               "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        text = script.group(1).replace('--out old.csv', f'--out old.csv --sandbox-url {box.url}')
        text = text.replace("https://api.fivetran.com", box.url)
        done = subprocess.run(["sh", "-e", "-c", text], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert _in_group(box, "warm_sunset") == []


def _in_group(box: SandboxHandle, group_id: str) -> list[dict[str, object]]:
    with httpx.Client(base_url=box.url, auth=box.auth, trust_env=False) as client:
        items: list[dict[str, object]] = client.get(
            f"/v1/groups/{group_id}/connections").json()["data"]["items"]
        return items
