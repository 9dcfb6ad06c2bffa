"""docker-compose.yml and deploy/Dockerfile, checked without Docker.

No Docker engine runs in CI (docs: DESIGN "Test machine facts"), so `docker compose
config` cannot validate the file. Instead the file is validated with `jsonschema`
against the Compose Specification's JSON schema, vendored in tests/schemas/
(compose-spec.json, Apache-2.0, as shipped in docker-compose 1.29.2), and these tests
parse it with PyYAML (which resolves the `<<:` merge keys and anchors the file uses, as
compose does) to check the rules that matter for this project: references resolve,
images can be built, scaled services can scale, start order and health checks are
sound, and every HELPDESK_* variable and `helpdesk` command named is one the code knows.
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from helpdesk import cli
from helpdesk.common import config
from support import known_setting

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
INIT_SQL = ROOT / "deploy" / "postgres" / "init.sql"

CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


@pytest.fixture(scope="module")
def services(compose) -> dict:
    services = compose.get("services")
    assert isinstance(services, dict) and services, "no services"
    return services


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    out, current = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # comment lines inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    return out


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def _command(service: dict) -> list[str] | None:
    cmd = service.get("command")
    if cmd is None:
        return None
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def _depends_on(service: dict) -> dict:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # short syntax: started is enough
        return {name: {"condition": "service_started"} for name in deps}
    return deps


def _environment(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def _helpdesk_services(services: dict) -> dict:
    """The services built from our own image."""
    return {name: s for name, s in services.items() if "build" in s}


# --- compose structure ---------------------------------------------------------

def _schema_errors(document: dict) -> list[str]:
    import jsonschema

    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_specification(compose):
    assert _schema_errors(compose) == []


@pytest.mark.parametrize("path,value", [
    (("services", "tickets", "restart"), 3),
    (("services", "tickets", "depends_on"), "rabbitmq"),
    (("services", "tickets", "helthcheck"), {"test": ["CMD", "true"]}),
])
def test_the_schema_check_catches_mistakes(compose, path, value):
    import copy

    broken = copy.deepcopy(compose)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert _schema_errors(broken)


def test_top_level_keys_are_known(compose):
    allowed = {"version", "name", "services", "networks", "volumes", "configs", "secrets", "include"}
    unknown = {k for k in compose if k not in allowed and not k.startswith("x-")}
    assert not unknown, f"unknown top-level keys {unknown}"


def test_service_names_are_valid(services):
    for name in services:
        assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name), name


def test_every_service_has_image_or_build(services):
    for name, service in services.items():
        assert isinstance(service, dict), name
        assert "image" in service or "build" in service, f"{name}: neither image nor build"


def test_build_context_and_dockerfile_exist(services):
    built = _helpdesk_services(services)
    assert built, "no service is built from the project's image"
    for name, service in built.items():
        build = service["build"]
        if isinstance(build, str):
            build = {"context": build}
        context = (ROOT / build.get("context", ".")).resolve()
        assert context.is_dir(), f"{name}: build context {context} missing"
        dockerfile = (context / build.get("dockerfile", "Dockerfile")).resolve()
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        assert dockerfile == DOCKERFILE.resolve(), f"{name}: builds from {dockerfile}, not deploy/Dockerfile"


def test_depends_on_targets_exist_and_conditions_hold(services):
    for name, service in services.items():
        for target, spec in _depends_on(service).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert target != name, f"{name} depends on itself"
            condition = (spec or {}).get("condition", "service_started")
            assert condition in CONDITIONS, f"{name} -> {target}: unknown condition {condition}"
            other = services[target]
            if condition == "service_healthy":
                assert other.get("healthcheck") and not other["healthcheck"].get("disable"), \
                    f"{name} waits for {target} healthy, but {target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert other.get("restart", "no") in ("no", "on-failure"), \
                    f"{target} is a one-shot but restarts forever"


def test_no_dependency_cycles(services):
    state: dict[str, str] = {}

    def visit(name, path):
        if state.get(name) == "done":
            return
        assert state.get(name) != "visiting", f"dependency cycle: {' -> '.join(path + [name])}"
        state[name] = "visiting"
        for target in _depends_on(services[name]):
            visit(target, path + [name])
        state[name] = "done"

    for name in services:
        visit(name, [])


def test_backing_services_have_healthchecks(services):
    rabbit = services["rabbitmq"]
    assert rabbit["image"].startswith("rabbitmq:") and "management" in rabbit["image"]
    assert rabbit["healthcheck"]["test"][1:] == ["rabbitmq-diagnostics", "-q", "ping"]
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "pg_isready" in postgres["healthcheck"]["test"]


def test_postgres_creates_one_database_per_service(services):
    mounts = [v for v in services["postgres"].get("volumes", []) if isinstance(v, str)]
    init = [m for m in mounts if ":/docker-entrypoint-initdb.d/" in m]
    assert init, "init.sql is not mounted into /docker-entrypoint-initdb.d"
    source = init[0].split(":", 1)[0]
    assert (ROOT / source).resolve() == INIT_SQL.resolve()
    created = set(re.findall(r"CREATE\s+DATABASE\s+(\w+)", INIT_SQL.read_text(), re.IGNORECASE))
    assert created == set(config.SERVICES)
    env = services["postgres"]["environment"]
    assert env["POSTGRES_USER"] == "helpdesk" and env["POSTGRES_PASSWORD"] == "helpdesk"


def test_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                source = volume.get("source") if volume.get("type", "volume") == "volume" else None
            else:
                source = volume.split(":", 1)[0] if ":" in volume else None
            if not source or source.startswith((".", "/", "~", "$")):
                continue  # bind mount or anonymous volume
            assert source in declared, f"{name} uses undeclared volume {source}"


def _fixed_host_ports(service: dict) -> list:
    fixed = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            if port.get("published"):
                fixed.append(port)
        elif ":" in str(port).split("/", 1)[0]:
            fixed.append(port)  # "[ip:]host:container": pins a host port
    return fixed


def test_scalable_services_can_scale(services):
    scalable = {n: s for n, s in _helpdesk_services(services).items() if (_command(s) or ["run"])[0] == "run"}
    assert "tickets" in scalable
    for name, service in scalable.items():
        assert "container_name" not in service, f"{name} has a container_name: cannot --scale"
        assert not _fixed_host_ports(service), f"{name} publishes a fixed host port: cannot --scale"
        assert "hostname" not in service, f"{name} has a fixed hostname"


def test_services_share_the_data_volume_and_wait_for_migrate(services):
    for name, service in _helpdesk_services(services).items():
        assert "data:/data" in service.get("volumes", []), f"{name} does not mount the data volume"
        if name == "migrate":
            continue
        deps = _depends_on(service)
        assert deps.get("migrate", {}).get("condition") == "service_completed_successfully", name
        assert deps.get("rabbitmq", {}).get("condition") == "service_healthy", name
        assert deps.get("postgres", {}).get("condition") == "service_healthy", name


def test_mail_goes_to_the_mail_catcher(services):
    assert "mailcatcher" in services
    for name, service in _helpdesk_services(services).items():
        env = _environment(service)
        assert env.get("HELPDESK_SMTP_HOST") == "mailcatcher", name
        assert str(env.get("HELPDESK_SMTP_PORT")) == "1025", name


def test_database_urls_point_at_created_databases(services):
    created = set(re.findall(r"CREATE\s+DATABASE\s+(\w+)", INIT_SQL.read_text(), re.IGNORECASE))
    for name, service in _helpdesk_services(services).items():
        for var, value in _environment(service).items():
            m = re.fullmatch(r"HELPDESK_(\w+)_DATABASE_URL", var)
            if m:
                assert value.startswith("postgresql://") and "@postgres:5432/" in value, (name, var)
                assert value.rsplit("/", 1)[1] in created, (name, var, value)


# --- settings and commands the code must know -------------------------------------

def test_known_variable_helper():
    assert known_setting("HELPDESK_AMQP_URI")
    assert known_setting("HELPDESK_TICKETS_DATABASE_URL")
    assert known_setting("HELPDESK_ERP_BRIDGE_DATABASE_URL")
    assert not known_setting("HELPDESK_NOSUCH_DATABASE_URL")
    assert not known_setting("HELPDESK_AMQP_URL")


def test_helpdesk_variables_in_compose_are_known(compose):
    # walk the whole document (services and x- extension blocks alike)
    names: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            env = node.get("environment")
            if env is not None:
                names.update(k for k in _environment(node) if k.startswith("HELPDESK_"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(compose)
    assert names, "no HELPDESK_* variables found"
    unknown = sorted(n for n in names if not known_setting(n))
    assert not unknown, f"variables the code does not read: {unknown}"


def test_helpdesk_variables_in_dockerfile_are_known():
    names = set()
    for keyword, args in _dockerfile_instructions(DOCKERFILE):
        if keyword == "ENV":
            names.update(re.findall(r"\b(HELPDESK_\w+)=", args))
    assert "HELPDESK_DATA_DIR" in names
    unknown = sorted(n for n in names if not known_setting(n))
    assert not unknown, unknown


def _check_helpdesk_command(argv: list[str], capsys) -> None:
    """argv is valid for `helpdesk`: the subcommand parses, and named services exist."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    capsys.readouterr()
    assert exit_info.value.code == 0, f"`helpdesk {' '.join(argv)}` is not a valid command"
    if argv[0] in ("run", "migrate"):
        services = [a for a in argv[1:] if not a.startswith("-")]
        unknown = [s for s in services if s != "all" and s not in cli.SERVICES]
        assert not unknown, f"`helpdesk {' '.join(argv)}`: unknown services {unknown}"


def test_check_helpdesk_command_rejects_nonsense(capsys):
    with pytest.raises(AssertionError):
        _check_helpdesk_command(["serve"], capsys)
    with pytest.raises(AssertionError):
        _check_helpdesk_command(["run", "nosuch"], capsys)


def test_dockerfile(capsys):
    instructions = _dockerfile_instructions(DOCKERFILE)
    by_keyword: dict[str, list[str]] = {}
    for keyword, args in instructions:
        by_keyword.setdefault(keyword, []).append(args)

    assert by_keyword["FROM"][0].startswith("python:3.11-slim")
    assert _exec_form(by_keyword["ENTRYPOINT"][-1]) == ["helpdesk"]
    default_cmd = _exec_form(by_keyword["CMD"][-1])
    assert default_cmd == ["run", "all"]
    _check_helpdesk_command(default_cmd, capsys)

    user = by_keyword["USER"][-1].split(":", 1)[0]
    assert user not in ("root", "0"), "the image runs as root"
    assert any("/data" in v for v in by_keyword["VOLUME"])
    env = " ".join(by_keyword["ENV"])
    assert "HELPDESK_DATA_DIR=/data" in env

    default_port = next(s.default for s in config.SETTINGS if s.name == "HELPDESK_METRICS_PORT")
    exposed = {p.split("/")[0] for args in by_keyword["EXPOSE"] for p in args.split()}
    assert default_port in exposed
    health = by_keyword["HEALTHCHECK"][-1]
    assert "CMD" in health and "urllib" in health and "/readyz" in health and "curl" not in health
    _exec_form(health[health.index("CMD") + 3:].strip())  # the exec form is valid JSON

    for args in by_keyword.get("COPY", []):
        *sources, _dest = [a for a in args.split() if not a.startswith("--")]
        for source in sources:
            if any(ch in source for ch in "*?["):
                continue  # a glob may match nothing
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_dockerignore_keeps_the_context_small():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv", "var", ".git"} <= ignored
    assert not {"services", "pyproject.toml"} & ignored


def test_compose_commands_are_helpdesk_subcommands(services, capsys):
    for name, service in _helpdesk_services(services).items():
        argv = _command(service)
        assert argv, f"{name} has no command (the image's default would run all services)"
        assert "entrypoint" not in service, f"{name} overrides the helpdesk entrypoint"
        _check_helpdesk_command(argv, capsys)
    assert _command(services["migrate"])[0] == "migrate"
    assert _command(services["tickets"]) == ["run", "tickets"]


def test_every_built_service_runs_in_compose(services):
    """Each service the CLI can run has its compose service (the rest are placeholders)."""
    run = set()
    for service in _helpdesk_services(services).values():
        argv = _command(service) or []
        if argv[:1] == ["run"]:
            run.update(argv[1:])
    missing = set(cli.SERVICES) - run
    assert not missing, f"services without a compose entry: {missing}"


def test_prometheus_and_grafana_get_their_configuration_from_deploy(services):
    def bind_sources(service):
        return {(ROOT / v.split(":")[0]).resolve(): v.split(":")[1] for v in service.get("volumes", [])
                if isinstance(v, str) and v.startswith("./")}

    prometheus = bind_sources(services["prometheus"])
    assert prometheus.get((ROOT / "deploy" / "prometheus").resolve()) == "/etc/prometheus"
    grafana = bind_sources(services["grafana"])
    assert grafana.get((ROOT / "deploy" / "grafana" / "provisioning").resolve()) == "/etc/grafana/provisioning"
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/helpdesk.yml").read_text())
    assert grafana.get((ROOT / "deploy" / "grafana" / "dashboards").resolve()) == \
        provider["providers"][0]["options"]["path"]
    rabbit = bind_sources(services["rabbitmq"])
    plugins = (ROOT / "deploy" / "rabbitmq" / "enabled_plugins").read_text()
    assert rabbit.get((ROOT / "deploy" / "rabbitmq" / "enabled_plugins").resolve()) == "/etc/rabbitmq/enabled_plugins"
    assert "rabbitmq_prometheus" in plugins


def test_prometheus_resolves_every_helpdesk_service_by_its_compose_name(services):
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "helpdesk")
    names = set(job["dns_sd_configs"][0]["names"])
    running = {name for name, s in _helpdesk_services(services).items() if (_command(s) or [""])[0] == "run"}
    assert names == running
