"""The systemd units, the Dockerfile, the deploy guide and the example config agree: every
``${NAME}`` the example uses reaches the daemon (a credential line, an ``-e``) and nothing
else does; paths, ports, the health check and the user are the same everywhere."""

from __future__ import annotations

import re
from pathlib import Path

from support import ROOT

from broadcaster.config import ConsoleConfig, load_config

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
CONSOLE_VARIABLES = {"BROADCASTER_CONSOLE_TOKEN"}


def text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def example_variables() -> tuple[set[str], set[str]]:
    """The ``${NAME}``s of config.example.toml: in active lines, in commented-out ones."""
    active: set[str] = set()
    commented: set[str] = set()
    for line in text("config.example.toml").splitlines():
        code, hash_, comment = line.partition("#")
        active |= set(VARIABLE.findall(code))
        if hash_ and not code.strip() and re.match(r"\s*[a-z_]+\s*=", comment):
            commented |= set(VARIABLE.findall(comment))  # a commented-out key, not prose
    return active, commented - active


def credentials(unit: str) -> tuple[set[str], set[str]]:
    """A unit's ``LoadCredential=`` names: active lines, commented-out lines."""
    active: set[str] = set()
    commented: set[str] = set()
    for line in text(unit).splitlines():
        m = re.fullmatch(r"(#\s*)?LoadCredential=([A-Za-z0-9_]+):(\S+)", line.strip())
        if m:
            assert m.group(3) == f"/etc/broadcaster/credentials/{m.group(2)}", line
            (commented if m.group(1) else active).add(m.group(2))
    return active, commented


def directive(unit: str, key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", text(unit), re.M)


def docker_env(source: str, container: str) -> set[str]:
    """The ``-e NAME`` of the ``docker run … --name CONTAINER`` example in ``source``."""
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if f"docker run -d --name {container} " in line)
    block = [lines[start]]
    while block[-1].rstrip().endswith("\\"):
        block.append(lines[start + len(block)])
    return set(re.findall(r"-e ([A-Z0-9_]+)", "\n".join(block)))


def test_every_variable_of_the_example_has_its_credential_line_and_no_other() -> None:
    active, commented = example_variables()
    assert active and commented, "the example uses variables, some in optional tables"
    daemon_active, daemon_commented = credentials("deploy/broadcaster.service")
    assert daemon_active == active - CONSOLE_VARIABLES
    assert daemon_commented == commented - CONSOLE_VARIABLES
    console_active, console_commented = credentials("deploy/broadcaster-console.service")
    assert console_active == CONSOLE_VARIABLES and not console_commented
    assert active | commented >= CONSOLE_VARIABLES


def test_the_docker_examples_pass_every_variable_and_only_those() -> None:
    active, commented = example_variables()
    daemon = (active | commented) - CONSOLE_VARIABLES
    for source in (text("Dockerfile"), text("deploy/README.md")):
        assert docker_env(source, "broadcaster") == daemon
    assert docker_env(text("Dockerfile"), "broadcaster-console") == CONSOLE_VARIABLES


def test_paths_ports_health_check_and_user_agree() -> None:
    dockerfile = text("Dockerfile")
    units = ("deploy/broadcaster.service", "deploy/broadcaster-console.service")
    # One config file, one data directory, one install, one user for all.
    configs = {
        *re.findall(
            r"--config (\S+?)'?$", "\n".join(directive(u, "ExecStart")[0] for u in units), re.M
        ),
        *re.findall(r'"--config", "([^"]+)"', dockerfile),
    }
    assert configs == {"/etc/broadcaster/config.toml"}
    for unit in units:
        assert directive(unit, "ConfigurationDirectory") == ["broadcaster"]
        assert directive(unit, "StateDirectory") == ["broadcaster"]
        assert directive(unit, "WorkingDirectory") == ["/var/lib/broadcaster"]
        assert directive(unit, "User") == ["broadcaster"], "the same dynamic uid for both"
        assert directive(unit, "DynamicUser") == ["yes"]
        assert "exec /opt/broadcaster/bin/broadcaster " in directive(unit, "ExecStart")[0]
    assert 'VOLUME ["/var/lib/broadcaster"]' in dockerfile
    assert "WORKDIR /var/lib/broadcaster" in dockerfile
    assert "USER broadcaster:broadcaster" in dockerfile
    assert "python -m venv /opt/broadcaster" in dockerfile
    # The health check asks the intake's default address for the route that answers it.
    example = load_config(ROOT / "config.example.toml")
    intake = re.search(r'^# listen = "([^"]+)"\s+# loopback', text("config.example.toml"), re.M)
    assert intake and intake.group(1) == "127.0.0.1:8470"
    (url,) = re.findall(r"'(http://[^']+)'", dockerfile)
    assert url == f"http://{intake.group(1)}/healthz"
    from broadcaster.web.intake import create_app

    app = create_app(None, None)  # type: ignore[arg-type]  # routes only, never called
    assert "/healthz" in {route.path for route in app.app.routes}
    ports = {int(p) for p in re.search(r"^EXPOSE (.*)$", dockerfile, re.M).group(1).split()}
    assert ports == {8470, ConsoleConfig().address[1]}
    assert example.console.listen == "127.0.0.1:8471"
    # Templates and state file sit beside the config, as the guide's layout says.
    layout = text("deploy/README.md")
    assert f"/etc/broadcaster/{Path(example.templates_dir).name}/" in layout
    assert not Path(
        re.search(r'^templates_dir = "([^"]+)"', text("config.example.toml"), re.M).group(1)
    ).is_absolute(), "relative to the config file"
