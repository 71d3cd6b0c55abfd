"""The real SensorThings client, frost-sta-client, against a real uvicorn serving
the lab: querying, filtering, expanding, paging, creating Observations."""

from __future__ import annotations

import frost_sta_client as fsc
import pytest
from frost_sta_client.model.ext.data_array_document import DataArrayDocument
from frost_sta_client.model.ext.data_array_value import DataArrayValue
from frost_sta_client.service.auth_handler import AuthHandler
from sta_lab import PM25_READINGS, StaLab

pytestmark = pytest.mark.slow


@pytest.fixture
def service(sta_server: str, fresh_lab: StaLab) -> fsc.SensorThingsService:
    # GIS tools and this client send HTTP Basic: the API key is the password.
    return fsc.SensorThingsService(sta_server, auth_handler=AuthHandler(username="lab", password=fresh_lab.lab.key))


def test_query_filter_and_expand(service, fresh_lab: StaLab):
    things = service.things().query().filter("startswith(name, 'air')").expand(
        "Datastreams($orderby=id;$expand=ObservedProperty),Locations").list()
    [air] = list(things)
    assert air.name == "air-1" and air.id == fresh_lab.things["air-1"]
    datastreams = list(air.datastreams)
    assert [d.name for d in datastreams] == ["air-1/pm2_5", "air-1/no2", "air-1/temperature"]
    assert datastreams[0].unit_of_measurement.symbol == "µg/m³"
    assert datastreams[0].observed_property.name == "PM2.5"
    [location] = list(air.locations)
    assert list(location.location["coordinates"]) == [5.7331, 58.969]
    located = service.locations().query().filter(
        "st_within(location, geography'POLYGON ((5.6 58.9, 5.8 58.9, 5.8 59.0, 5.6 59.0, 5.6 58.9))')").list()
    assert sorted(loc.name for loc in located) == ["air-1", "noise-2"]


def test_paging_through_observations(service, fresh_lab: StaLab):
    datastream = service.datastreams().find(fresh_lab.series["air-1/pm2_5"])
    assert datastream.name == "air-1/pm2_5"
    observations = datastream.get_observations().query().top(25).count().orderby("phenomenonTime", "asc").list()
    assert observations.count == PM25_READINGS
    results = [o.result for o in observations]   # the client follows @iot.nextLink
    assert results == [i / 2 for i in range(PM25_READINGS)]


def test_create_observations_single_and_data_array(service, fresh_lab: StaLab):
    datastream = service.datastreams().find(fresh_lab.series["air-1/no2"])
    observation = fsc.Observation(result=33.25, phenomenon_time="2025-03-03T08:00:00Z", datastream=datastream)
    service.create(observation)
    assert observation.id == f"{datastream.id}-1740988800000000"
    assert service.observations().find(observation.id).result == 33.25

    dav = DataArrayValue()
    dav.datastream = datastream
    dav.components = {DataArrayValue.Property.PHENOMENON_TIME, DataArrayValue.Property.RESULT}
    for minute, value in ((1, 34.0), (2, 35.0)):
        dav.add_observation(fsc.Observation(result=value, phenomenon_time=f"2025-03-03T08:0{minute}:00Z",
                                            datastream=datastream))
    created = service.observations().create(DataArrayDocument(value=[dav]))
    assert len(created) == 2 and all(o.self_link.startswith(service.url.url) for o in created)
    stored = datastream.get_observations().query().filter("phenomenonTime ge 2025-03-03T08:00:00Z").orderby(
        "phenomenonTime", "asc").list()
    assert [o.result for o in stored] == [33.25, 34.0, 35.0]
