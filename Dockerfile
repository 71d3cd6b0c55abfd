# citylab platform image: one image, one entry point, every stage a subcommand
# (`citylab api`, `citylab ingest`, `citylab db migrate`, `citylab broker-config`,
# `citylab simulate`, ...). Built from the distribution with the `server` extra.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN python -m venv /opt/citylab \
 && /opt/citylab/bin/pip install ".[server]"

FROM python:3.11-slim
ENV PATH=/opt/citylab/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CITYLAB_API_HOST=0.0.0.0 \
    CITYLAB_API_PORT=8080
COPY --from=build /opt/citylab /opt/citylab
# A non-root user; /mosquitto/config exists and is its own so that an empty named
# volume mounted there (docker-compose `broker-config`) starts out writable by it.
RUN groupadd --system --gid 10001 citylab \
 && useradd --system --uid 10001 --gid citylab --create-home --home-dir /home/citylab citylab \
 && mkdir -p /mosquitto/config \
 && chown citylab:citylab /mosquitto/config
USER citylab
WORKDIR /home/citylab
EXPOSE 8080
ENTRYPOINT ["citylab"]
CMD ["--help"]
