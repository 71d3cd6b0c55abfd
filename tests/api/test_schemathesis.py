"""Schemathesis over the OpenAPI document against the app in-process (ASGI), on a real database
and a real dynsec broker:
no server errors, and every answer matches the documented schema. Deterministic
(derandomized) and bounded (few examples per operation)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from testbed import DYNSEC_ADMIN, make_tenant

from api import create_app
from citylab.settings import Settings

pytestmark = pytest.mark.slow

TEMPLATE_DB = "citylab_template"


@pytest.fixture(scope="module")
def api_schema(pg_server, dynsec) -> Iterator[schemathesis.BaseSchema]:
    name = f"st_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    url = pg_server.url_for(name)
    tenant = make_tenant(url, name=f"Fuzz {secrets.token_hex(3)}", kind="provider")
    config = Settings(database_url=url, mqtt_url=dynsec.url, dynsec_username=DYNSEC_ADMIN,
                      dynsec_password=dynsec.admin_password)
    app = create_app(config)
    app.state.pool.open(wait=True)  # the ASGI transport does not run the lifespan
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        schema.config.headers = {"Authorization": f"Bearer {tenant.key}"}
        schema.client = TestClient(app, raise_server_exceptions=False)  # type: ignore[attr-defined]
        yield schema
    finally:
        app.state.pool.close()
        with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _poison(value: object, bad: str) -> object:
    """`value` with `bad` appended to every string in it (dict keys too)."""
    if isinstance(value, str):
        return value + bad
    if isinstance(value, dict):
        return {_poison(k, bad): _poison(v, bad) for k, v in value.items()}
    if isinstance(value, list):
        return [_poison(v, bad) for v in value]
    return value


def _request(case: schemathesis.Case, headers: dict) -> dict:
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    request = {k: kwargs[k] for k in ("method", "url", "params", "headers", "cookies") if kwargs.get(k)}
    if "json" in kwargs:
        request["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        request["content" if isinstance(data, (bytes, str)) else "data"] = data
    if kwargs.get("files"):
        request["files"] = kwargs["files"]
    return request


def test_api_conforms_to_its_schema(api_schema: schemathesis.BaseSchema) -> None:
    # Operation by operation with Hypothesis directly (schemathesis' pytest plugin does not
    # load with this pytest); each runs a bounded, derandomized number of examples.
    headers = api_schema.config.headers
    client: TestClient = api_schema.client  # type: ignore[attr-defined]
    tested = []
    statuses: list[int] = []
    for result in api_schema.include(path_regex=r"^/(health|v1/)").get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=12, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            # sent with Starlette's (httpx) TestClient: schemathesis' own requests transport
            # does not work with the installed urllib3
            response = client.request(**_request(case, headers))
            statuses.append(response.status_code)
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        check()
        tested.append(operation.label)
    assert len(tested) >= 25, tested
    print(f"schemathesis: {len(tested)} operations, {len(statuses)} requests, "
          f"statuses {sorted(set(statuses))}")
    assert len(statuses) >= 5 * len(tested)
    # in the same test: the ASGI schema's pool does not outlive one test of this module
    _nul_bytes_are_refused_at_the_edge(api_schema)


def _nul_bytes_are_refused_at_the_edge(api_schema: schemathesis.BaseSchema) -> None:
    """The generated requests again, with a NUL byte appended to every string of their
    query and JSON body: a documented 4xx problem naming a field, never a server error."""
    headers = api_schema.config.headers
    client: TestClient = api_schema.client  # type: ignore[attr-defined]
    poisoned: list[int] = []
    for result in api_schema.include(path_regex=r"^/(health|v1/)").get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=4, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            request = _request(case, headers)
            strings = any(isinstance(v, str) for v in (request.get("params") or {}).values())
            request["params"] = _poison(request.get("params") or {}, "\x00")
            if isinstance(request.get("json"), (dict, list)):
                strings = strings or _poison(request["json"], "\x00") != request["json"]
                request["json"] = _poison(request["json"], "\x00")
            response = client.request(**request)
            case.validate_response(response, checks=[not_a_server_error])
            if strings:
                assert response.status_code == 422, (case.operation.label, response.text)
                assert response.json()["errors"][0]["name"], response.text
                poisoned.append(response.status_code)

        check()
    print(f"schemathesis with NUL bytes: {len(poisoned)} requests refused at the edge")
    assert len(poisoned) >= 20
