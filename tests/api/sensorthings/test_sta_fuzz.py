"""No input makes the SensorThings face fail with a server error: malformed options are
400, unsupported ones 501, unknown paths 404."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sta_lab import ROOT

TOKENS = ["name", "result", "id", "phenomenonTime", "Datastream/Thing/name", "Datastreams/Observations/result",
          "location", "properties/kind", "eq", "ne", "gt", "and", "or", "not", "add", "div", "mod", "(", ")", ",",
          "'x'", "''", "1", "-2.5", "null", "true", "2025-03-01T12:00:00Z", "2025-03-01", "duration'P1D'",
          "geography'POINT (5.7 58.95)'", "geography'POLYGON ((0 0, 1 0, 1 1, 0 0))'", "geometry'LINESTRING (1 2)'",
          "substringof(", "st_within(", "geo.distance(", "year(", "round(", "length(", "in", "asc", "desc", ";",
          "$top=1", "$expand=", "Observations", "/", "any(d:d/name eq 'x')", "'T********'"]
OPTIONS = ["$filter", "$orderby", "$expand", "$select", "$top", "$skip", "$count", "$resultFormat", "$skiptoken"]
PATHS = ["Things", "Things(1)", "Datastreams(1)/Observations", "Observations('1-2')", "Things(1)/name/$value",
         "Locations/$ref", "Things(x)", "Things(1)/Nothing", "Observations(1)", "Datastreams(1)/Thing/Locations",
         "Things(99999999999999999999)", "Sensors(1)/Datastreams(2)/Observations"]

expressions = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=8).map(" ".join)


@settings(max_examples=150, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(PATHS), option=st.sampled_from(OPTIONS), value=expressions | st.text(max_size=20))
def test_no_input_is_a_server_error(sta, path, option, value):
    response = sta.get(f"{ROOT}/{path}", params={option: value})
    assert response.status_code in (200, 400, 404, 501), (path, option, value, response.text)
    if response.status_code != 200:
        assert response.json()["detail"]
