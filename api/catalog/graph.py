"""The lab's DCAT-AP 3 catalogue as an rdflib graph, from plain values (no I/O here).

    <base>/catalog                              dcat:Catalog (publisher, contact point, themes)
    <base>/catalog/datasets/{product}           dcat:Dataset, one per listed data product
    <base>/catalog/datasets/{product}/csv       dcat:Distribution (and /parquet): the exports
    <base>/catalog/services/{face}              dcat:DataService: /v1 and the standard faces
    <base>/catalog/organisations/{slug}         foaf:Agent (publisher) and #contact (vcard:Kind)
    <base>/catalog/metrics/{metric}             dqv:Metric of the quality report
    <base>/catalog/records/external/{id}        dcat:CatalogRecord of a harvested dataset

Every IRI starts with the configured public base URL, never with the request's
Host header. Themes come from the vocabulary table (protocol.quantities), units
from protocol.units, licences from storage.products.LICENCES; access rights,
frequencies, file types and languages are the EU Publications Office's
authority tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

from rdflib import Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, PROV, RDF, RDFS, SKOS, XSD

from protocol.quantities import QUANTITIES, THEME_SCHEME, THEMES
from protocol.units import UNITS
from storage.catalog import ExternalDataset, HarvestSource, ProductSeries, Publisher
from storage.gdpr import DPV, DPV_TERMS, Classification
from storage.products import LICENCES, DataProduct, QualityWindow

__all__ = ["CatalogContent", "DataServiceFace", "NAMESPACES", "build_catalog"]

DQV = Namespace("http://www.w3.org/ns/dqv#")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
LOCN = Namespace("http://www.w3.org/ns/locn#")
GSP = Namespace("http://www.opengis.net/ont/geosparql#")
ADMS = Namespace("http://www.w3.org/ns/adms#")
LDQD = Namespace("http://www.w3.org/2016/05/ldqd#")
DPVNS = Namespace(DPV)
DCATAP = Namespace("http://data.europa.eu/r5r/")

NAMESPACES = {
    "dcat": DCAT, "dct": DCTERMS, "foaf": FOAF, "vcard": VCARD, "dqv": DQV, "locn": LOCN, "gsp": GSP,
    "adms": ADMS, "prov": PROV, "skos": SKOS, "xsd": XSD, "rdfs": RDFS, "ldqd": LDQD, "dcatap": DCATAP,
    "dpv": DPVNS,
}

_EU = "http://publications.europa.eu/resource/authority/"
ACCESS_PUBLIC = URIRef(_EU + "access-right/PUBLIC")
ACCESS_RESTRICTED = URIRef(_EU + "access-right/RESTRICTED")
ACCESS_LABELS = {ACCESS_PUBLIC: "public", ACCESS_RESTRICTED: "restricted"}
LANGUAGES = {"en": URIRef(_EU + "language/ENG"), "nb": URIRef(_EU + "language/NOB")}
_FREQUENCY = _EU + "frequency/"
_FILE_TYPE = _EU + "file-type/"
_IANA = "https://www.iana.org/assignments/media-types/"
_PUBLISHER_TYPE = "http://purl.org/adms/publishertype/"
PUBLISHER_TYPES = {"city": "LocalAuthority", "provider": "Company", "research": "Academia-ScientificOrganisation"}

# The two exports every dataset is distributed as: (path, EU file type, IANA media type, title).
EXPORTS = (
    ("csv", "CSV", "text/csv", "CSV export"),
    ("parquet", "PARQUET", "application/vnd.apache.parquet", "Parquet export"),
)

# The quality report's metrics: (name, ldqd dimension, definition, QualityWindow attribute).
METRICS = (
    ("completeness", LDQD.completeness, "Readings received / readings expected from the sensors' declared "
     "intervals, mean over the series (0..1).", "completeness"),
    ("uptime", LDQD.availability, "Share of hours with at least one reading, mean over the series (0..1).",
     "uptime"),
    ("anomaly-rate", LDQD.accuracy, "Readings flagged as anomalous by the stream detectors / readings (0..1).",
     "anomaly_rate"),
    ("freshness", LDQD.timeliness, "Seconds since the newest reading of the stalest series.", "freshness_s"),
)


@dataclass(frozen=True, slots=True)
class DataServiceFace:
    """An API face of the lab: its path under the base URL and what it conforms to."""

    name: str               # IRI segment: <base>/catalog/services/{name}
    path: str               # endpoint, e.g. /v1
    title: str
    description: str
    conforms_to: str        # the specification's URI
    standard: str           # and its title
    endpoint_description: str | None = None   # path of a machine-readable description


@dataclass(frozen=True, slots=True)
class CatalogContent:
    """Everything the catalogue says, read from storage beforehand."""

    base: str                                   # public base URL, no trailing slash
    title: str
    description: str
    publisher: Publisher | None                 # None: the lab itself (named by `title`)
    products: list[DataProduct]
    publishers: dict[int, Publisher]            # org id -> publisher of its products
    series: dict[int, list[ProductSeries]]      # product id -> its series
    quality: dict[int, list[QualityWindow]]     # product id -> quality windows
    computed_at: datetime
    services: list[DataServiceFace] = field(default_factory=list)
    sources: list[HarvestSource] = field(default_factory=list)
    external: list[ExternalDataset] = field(default_factory=list)
    privacy: dict[int, Classification] = field(default_factory=dict)   # product id -> its strictest series'


def _dt(value: datetime) -> Literal:
    return Literal(value.isoformat(), datatype=XSD.dateTime)


def _duration(seconds: float) -> Literal:
    return Literal(f"PT{seconds:g}S", datatype=XSD.duration)


def frequency(interval_s: float) -> URIRef:
    """The EU frequency concept of a sensor reporting every `interval_s` seconds."""
    if interval_s < 3600:
        return URIRef(_FREQUENCY + "UPDATE_CONT")
    if interval_s < 86400:
        return URIRef(_FREQUENCY + "HOURLY")
    if interval_s < 7 * 86400:
        return URIRef(_FREQUENCY + "DAILY")
    return URIRef(_FREQUENCY + "WEEKLY")


class _Builder:
    def __init__(self, content: CatalogContent) -> None:
        self.c = content
        self.g = Graph()
        for prefix, namespace in NAMESPACES.items():
            self.g.bind(prefix, namespace)
        self.catalog = self.iri("catalog")

    def iri(self, path: str) -> URIRef:
        return URIRef(f"{self.c.base}/{path}")

    def add(self, s, p, o) -> None:
        self.g.add((s, p, o))

    def concept(self, uri: URIRef, kind: URIRef, label: str) -> URIRef:
        """A concept of an EU authority table (its scheme is the IRI up to the last slash)."""
        self.add(uri, RDF.type, kind)
        self.add(uri, RDF.type, SKOS.Concept)
        self.add(uri, SKOS.inScheme, URIRef(str(uri).rsplit("/", 1)[0]))
        self.add(uri, SKOS.prefLabel, Literal(label, lang="en"))
        return uri

    # Agents ------------------------------------------------------------------

    def agent(self, publisher: Publisher | None) -> URIRef:
        if publisher is None:
            node = self.iri("catalog/organisations/lab")
            self.add(node, RDF.type, FOAF.Agent)
            self.add(node, RDF.type, FOAF.Organization)
            self.add(node, FOAF.name, Literal(self.c.title, lang="en"))
            return node
        node = self.iri(f"catalog/organisations/{publisher.slug}")
        self.add(node, RDF.type, FOAF.Agent)
        self.add(node, RDF.type, FOAF.Organization)
        self.add(node, FOAF.name, Literal(publisher.name))
        if publisher.org_number:
            self.add(node, DCTERMS.identifier, Literal(publisher.org_number))
        concept = URIRef(_PUBLISHER_TYPE + PUBLISHER_TYPES[publisher.kind])
        self.add(node, DCTERMS.type, concept)
        self.add(concept, RDF.type, SKOS.Concept)
        self.add(concept, SKOS.prefLabel, Literal(PUBLISHER_TYPES[publisher.kind], lang="en"))
        if publisher.homepage:
            page = URIRef(publisher.homepage)
            self.add(node, FOAF.homepage, page)
            self.add(page, RDF.type, FOAF.Document)
        return node

    def contact(self, publisher: Publisher | None) -> URIRef:
        slug = publisher.slug if publisher else "lab"
        node = self.iri(f"catalog/organisations/{slug}#contact")
        self.add(node, RDF.type, VCARD.Kind)
        self.add(node, RDF.type, VCARD.Organization)
        self.add(node, VCARD.fn, Literal(publisher.name if publisher else self.c.title))
        if publisher and publisher.contact_email:
            self.add(node, VCARD.hasEmail, URIRef(f"mailto:{publisher.contact_email}"))
        else:
            self.add(node, VCARD.hasURL, URIRef(f"{self.c.base}/open"))
        return node

    def rights(self, public: bool) -> URIRef:
        uri = ACCESS_PUBLIC if public else ACCESS_RESTRICTED
        return self.concept(uri, DCTERMS.RightsStatement, ACCESS_LABELS[uri])

    # Catalogue ---------------------------------------------------------------

    def build(self) -> Graph:
        c, g, cat = self.c, self.g, self.catalog
        self.add(cat, RDF.type, DCAT.Catalog)
        self.add(cat, DCTERMS.title, Literal(c.title, lang="en"))
        self.add(cat, DCTERMS.description, Literal(c.description, lang="en"))
        self.add(cat, DCTERMS.identifier, Literal(str(cat)))
        self.add(cat, DCTERMS.publisher, self.agent(c.publisher))
        self.add(cat, DCAT.contactPoint, self.contact(c.publisher))
        self.add(cat, DCTERMS.modified, _dt(c.computed_at))
        home = URIRef(f"{c.base}/open")
        self.add(cat, FOAF.homepage, home)
        self.add(home, RDF.type, FOAF.Document)
        for code, lang in LANGUAGES.items():
            self.add(cat, DCTERMS.language, self.concept(lang, DCTERMS.LinguisticSystem, code))
        scheme = URIRef(THEME_SCHEME)
        self.add(cat, DCAT.themeTaxonomy, scheme)
        self.add(scheme, RDF.type, SKOS.ConceptScheme)
        self.add(scheme, DCTERMS.title, Literal("Data theme", lang="en"))
        services = [self.service(face) for face in c.services]
        for node in services:
            self.add(cat, DCAT.service, node)
        for product in c.products:
            dataset = self.dataset(product, services[0] if services else None)
            self.add(cat, DCAT.dataset, dataset)
            for node in services:
                self.add(node, DCAT.servesDataset, dataset)
        self.harvested()
        return g

    def service(self, face: DataServiceFace) -> URIRef:
        c = self.c
        node = self.iri(f"catalog/services/{face.name}")
        self.add(node, RDF.type, DCAT.DataService)
        self.add(node, DCTERMS.identifier, Literal(str(node)))
        self.add(node, DCTERMS.title, Literal(face.title, lang="en"))
        self.add(node, DCTERMS.description, Literal(face.description, lang="en"))
        self.add(node, DCAT.endpointURL, URIRef(c.base + face.path))
        if face.endpoint_description:
            self.add(node, DCAT.endpointDescription, URIRef(c.base + face.endpoint_description))
        standard = URIRef(face.conforms_to)
        self.add(node, DCTERMS.conformsTo, standard)
        self.add(standard, RDF.type, DCTERMS.Standard)
        self.add(standard, DCTERMS.title, Literal(face.standard, lang="en"))
        self.add(node, DCTERMS.publisher, self.agent(c.publisher))
        self.add(node, DCAT.contactPoint, self.contact(c.publisher))
        self.add(node, DCTERMS.accessRights, self.rights(True))
        return node

    # Datasets ----------------------------------------------------------------

    def dataset(self, product: DataProduct, api: URIRef | None) -> URIRef:
        c = self.c
        node = self.iri(f"catalog/datasets/{product.id}")
        publisher = c.publishers.get(product.org_id)
        series = c.series.get(product.id, [])
        self.add(node, RDF.type, DCAT.Dataset)
        self.add(node, DCTERMS.identifier, Literal(str(node)))
        self.add(node, DCTERMS.title, Literal(product.title, lang="en"))
        self.add(node, DCTERMS.description, Literal(product.description or product.title, lang="en"))
        if product.title_nb:
            self.add(node, DCTERMS.title, Literal(product.title_nb, lang="nb"))
        if product.description_nb:
            self.add(node, DCTERMS.description, Literal(product.description_nb, lang="nb"))
        self.add(node, DCTERMS.publisher, self.agent(publisher))
        self.add(node, DCAT.contactPoint, self.contact(publisher))
        self.add(node, DCTERMS.issued, _dt(product.created_at))
        if product.modified_at is not None:
            self.add(node, DCTERMS.modified, _dt(product.modified_at))
        page = URIRef(f"{c.base}/open#product-{product.id}" if product.open else f"{c.base}/v1/products/{product.id}")
        self.add(node, DCAT.landingPage, page)
        self.add(page, RDF.type, FOAF.Document)
        self.add(node, DCTERMS.accessRights, self.rights(product.open))
        for keyword in product.keywords:
            self.add(node, DCAT.keyword, Literal(keyword, lang="en"))
        quantities = sorted({s.quantity for s in series})
        for name in quantities:
            q = QUANTITIES.get(name)
            if q is not None:
                self.add(node, DCAT.keyword, Literal(q.label or name, lang="en"))
        self.themes(node, [QUANTITIES[n].theme for n in quantities if n in QUANTITIES] or ["TECH"])
        self.spatial(node, series)
        self.temporal(node, series)
        intervals = [s.interval_s for s in series if s.interval_s]
        if intervals:
            period = frequency(min(intervals))
            self.add(node, DCTERMS.accrualPeriodicity,
                     self.concept(period, DCTERMS.Frequency, str(period).rsplit("/", 1)[1].lower()))
            self.add(node, DCAT.temporalResolution, _duration(min(intervals)))
        for window in c.quality.get(product.id, []):
            self.quality(node, window)
        if product.id in c.privacy:
            self.privacy(node, c.privacy[product.id])
        for path, file_type, media, title in EXPORTS:
            self.add(node, DCAT.distribution, self.distribution(node, product, series, api, path, file_type,
                                                                 media, title))
        return node

    def privacy(self, node: URIRef, classification: Classification) -> None:
        """DPV terms on the dataset (as HealthDCAT-AP does): personal data category, legal basis,
        purpose and controller; nothing for non-personal data beyond its category."""
        self.add(node, DPVNS.hasPersonalData, URIRef(DPV_TERMS[classification.personal_data].iri))
        if classification.legal_basis:
            self.add(node, DPVNS.hasLegalBasis, URIRef(DPV_TERMS[classification.legal_basis].iri))
        if classification.purpose:
            self.add(node, DPVNS.hasPurpose, URIRef(DPV_TERMS[classification.purpose].iri))
        if classification.controller:
            controller = URIRef(f"{node}#controller")
            self.add(node, DPVNS.hasDataController, controller)
            self.add(controller, RDF.type, DPVNS.DataController)
            self.add(controller, FOAF.name, Literal(classification.controller))

    def themes(self, node: URIRef, codes: Iterable[str]) -> None:
        for code in sorted(set(codes)):
            theme = THEMES[code]
            concept = URIRef(theme.uri)
            self.add(node, DCAT.theme, concept)
            self.add(concept, RDF.type, SKOS.Concept)
            self.add(concept, SKOS.inScheme, URIRef(THEME_SCHEME))
            self.add(concept, SKOS.prefLabel, Literal(theme.label_en, lang="en"))
            self.add(concept, SKOS.prefLabel, Literal(theme.label_nb, lang="nb"))

    def spatial(self, node: URIRef, series: list[ProductSeries]) -> None:
        places = sorted({(s.lon, s.lat) for s in series if s.lat is not None and s.lon is not None})
        if not places:
            return
        location = URIRef(f"{node}#spatial")
        self.add(node, DCTERMS.spatial, location)
        self.add(location, RDF.type, DCTERMS.Location)
        lons, lats = [p[0] for p in places], [p[1] for p in places]
        w, e, s, n = min(lons), max(lons), min(lats), max(lats)
        if (w, s) != (e, n):
            wkt = f"POLYGON(({w} {s},{e} {s},{e} {n},{w} {n},{w} {s}))"
            self.add(location, DCAT.bbox, Literal(wkt, datatype=GSP.wktLiteral))
        centroid = f"POINT({sum(lons) / len(lons):.6f} {sum(lats) / len(lats):.6f})"
        self.add(location, DCAT.centroid, Literal(centroid, datatype=GSP.wktLiteral))

    def temporal(self, node: URIRef, series: list[ProductSeries]) -> None:
        firsts = [s.first for s in series if s.first is not None]
        lasts = [s.last for s in series if s.last is not None]
        if not firsts:
            return
        period = URIRef(f"{node}#temporal")
        self.add(node, DCTERMS.temporal, period)
        self.add(period, RDF.type, DCTERMS.PeriodOfTime)
        self.add(period, DCAT.startDate, _dt(min(firsts)))
        self.add(period, DCAT.endDate, _dt(max(lasts)))

    def quality(self, node: URIRef, window: QualityWindow) -> None:
        for name, dimension, definition, attribute in METRICS:
            value = getattr(window, attribute)
            if value is None:
                continue
            metric = self.iri(f"catalog/metrics/{name}-{window.days}d")
            self.add(metric, RDF.type, DQV.Metric)
            self.add(metric, SKOS.prefLabel, Literal(f"{name} over {window.days} days", lang="en"))
            self.add(metric, SKOS.definition, Literal(f"{definition} Over the last {window.days} days.", lang="en"))
            self.add(metric, DQV.expectedDataType, XSD.double)
            self.add(metric, DQV.inDimension, dimension)
            self.add(dimension, RDF.type, DQV.Dimension)
            measurement = URIRef(f"{node}#quality-{name}-{window.days}d")
            self.add(node, DQV.hasQualityMeasurement, measurement)
            self.add(measurement, RDF.type, DQV.QualityMeasurement)
            self.add(measurement, DQV.computedOn, node)
            self.add(measurement, DQV.isMeasurementOf, metric)
            self.add(measurement, DQV.value, Literal(float(value), datatype=XSD.double))
            self.add(measurement, PROV.generatedAtTime, _dt(self.c.computed_at))

    def distribution(
        self, dataset: URIRef, product: DataProduct, series: list[ProductSeries], api: URIRef | None,
        path: str, file_type: str, media: str, title: str,
    ) -> URIRef:
        c = self.c
        node = URIRef(f"{dataset}/{path}")
        self.add(node, RDF.type, DCAT.Distribution)
        self.add(node, DCTERMS.title, Literal(f"{product.title}: {title}", lang="en"))
        self.add(node, DCTERMS.description, Literal(export_description(series, path), lang="en"))
        query = urlencode([("series_id", s.series_id) for s in series] + [("format", path)])
        url = URIRef(f"{c.base}/v1/exports/readings?{query}")
        self.add(node, DCAT.accessURL, url)
        self.add(node, DCAT.downloadURL, url)
        media_type = URIRef(_IANA + media)
        self.add(node, DCAT.mediaType, media_type)
        self.add(media_type, RDF.type, DCTERMS.MediaType)
        self.add(node, DCTERMS.format, self.concept(URIRef(_FILE_TYPE + file_type), DCTERMS.MediaTypeOrExtent,
                                                   file_type))
        licence = LICENCES[product.licence] if product.licence in LICENCES else LICENCES["proprietary"]
        self.add(node, DCTERMS.license, self.concept(URIRef(licence.uri), DCTERMS.LicenseDocument, licence.code))
        self.add(node, DCTERMS.accessRights, self.rights(product.open))
        self.add(node, DCTERMS.issued, _dt(product.created_at))
        if product.modified_at is not None:
            self.add(node, DCTERMS.modified, _dt(product.modified_at))
        if api is not None:
            self.add(node, DCAT.accessService, api)
        return node

    # Harvested ---------------------------------------------------------------

    def harvested(self) -> None:
        """Other catalogues' datasets, as harvested, each under its source catalogue."""
        c = self.c
        sources = {s.id: s for s in c.sources}
        for source in c.sources:
            self.g.parse(data=source.description, format="turtle")
            self.add(self.catalog, DCAT.catalog, URIRef(source.catalog_iri))
        for ext in c.external:
            source = sources[ext.source_id]
            self.g.parse(data=ext.description, format="turtle")
            dataset = URIRef(ext.iri)
            self.add(URIRef(source.catalog_iri), DCAT.dataset, dataset)
            record = self.iri(f"catalog/records/external/{ext.id}")
            self.add(self.catalog, DCAT.record, record)
            self.add(record, RDF.type, DCAT.CatalogRecord)
            self.add(record, FOAF.primaryTopic, dataset)
            self.add(record, DCTERMS.title, Literal(f"Harvested: {ext.title}", lang="en"))
            self.add(record, DCTERMS.issued, _dt(ext.harvested_at))
            self.add(record, DCTERMS.modified, _dt(ext.harvested_at))
            self.add(record, RDFS.seeAlso, URIRef(ext.source_url))


def export_description(series: list[ProductSeries], fmt: str) -> str:
    """What an export holds, with each series' unit from the vocabulary table."""
    columns = ("series_id, device, quantity, unit, time (ISO 8601, UTC), value" if fmt == "csv"
               else "series_id, device, quantity, unit, time (timestamp[us, UTC]), value")
    parts = []
    for s in series:
        unit = UNITS.get(s.unit or "")
        meaning = f"{unit.name}, {unit.symbol}, {unit.definition}" if unit else "no unit"
        parts.append(f"series {s.series_id} {s.quantity} in {s.unit or '-'} ({meaning})")
    return f"Raw readings, one row per reading; columns {columns}. " + "; ".join(parts) + "."


def build_catalog(content: CatalogContent) -> Graph:
    """The catalogue graph of `content`."""
    return _Builder(content).build()

