"""The API process holds one ingest pipeline for all its HTTP inlets (api.ingest_door): a series
written alternately through /v1/ingest, SensorThings and NGSI-LD is learned by one detector
(separate pipelines would each prime their own from the database and miss the others' later writes)."""

from __future__ import annotations

import gc
import json

from ngsild_lab import link
from sta_lab import ROOT, StaLab, client_of

from ingest import Pipeline
from protocol.senml import SENML_JSON

START = 1741176000   # 2025-03-05T12:00:00Z, after the lab's own readings


def _iso(seconds: int) -> str:
    return f"2025-03-05T12:{(seconds - START) // 60:02d}:00Z"


def test_every_http_inlet_commits_through_one_pipeline(fresh_lab: StaLab) -> None:
    series = fresh_lab.series["noise-2/noise"]
    with client_of(fresh_lab, fresh_lab.lab.headers) as client:
        token = client.post("/v1/ingest/tokens", json={"device": "noise-2"})
        assert token.status_code == 201, token.text
        device = {"Authorization": f"Bearer {token.json()['token']}", "Content-Type": SENML_JSON}
        door = client.app.state.ingest_door
        learned, pipelines = [], set()
        for minute in range(6):
            at, value = START + 60 * minute, 60.0 + minute / 2
            if minute % 3 == 0:
                pack = [{"n": "noise-2/noise", "u": "dB", "v": value, "t": at}]
                answer = client.post("/v1/ingest", content=json.dumps(pack), headers=device)
            elif minute % 3 == 1:
                answer = client.post(f"{ROOT}/Datastreams({series})/Observations",
                                     json={"result": value, "phenomenonTime": _iso(at)})
            else:
                answer = client.patch("/ngsi-ld/v1/entities/urn:ngsi-ld:NoiseLevelObserved:lab:noise-2/attrs",
                                      headers=link("Environment"),
                                      json={"LAeq": {"type": "Property", "value": value, "observedAt": _iso(at)}})
            assert answer.status_code in (201, 204), answer.text
            pipelines.add(id(door.pipeline))
            # the readings this series' detector has learned (stream state, private to the processor);
            # the first write primes it from the stored readings (ingest.Pipeline._prime)
            learned.append(int(door.pipeline.processor._state.n[series]))
        assert learned == list(range(learned[0], learned[0] + 6)), learned   # each write, one detector
        gc.collect()
        assert [p for p in gc.get_objects() if isinstance(p, Pipeline) and p._url == fresh_lab.url] == [door.pipeline]
        assert len(pipelines) == 1
    assert door.pipeline is None   # closed at shutdown
