# One image for every Fanline role; the role is the command line:
#   fanline serve post | fanline serve fanout | fanline serve worker | fanline serve timeline
# Build:  docker build -t fanline:dev .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/fanline
ENV PATH=/opt/fanline/bin:$PATH
WORKDIR /src
COPY . .
# Regenerate the gRPC stubs from protos/ so the image never depends on generated files being
# present in the build context, then install the project (and its `fanline` console script).
RUN pip install "grpcio-tools>=1.66" \
 && python services/common/protogen.py \
 && pip install . \
 && fanline --help > /dev/null

FROM ${PYTHON_IMAGE}
# Bytecode was compiled at install time; the root filesystem is read-only at run time.
ENV PATH=/opt/fanline/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --system --gid 10001 fanline \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin fanline
COPY --from=build /opt/fanline /opt/fanline
# Numeric user so Kubernetes can verify runAsNonRoot without resolving names.
USER 10001:10001
WORKDIR /tmp
# post, fanout, timeline, worker health, Prometheus metrics, plain-text health under TLS (prod)
EXPOSE 50051 50052 50053 50054 9464 8086
ENTRYPOINT ["fanline"]
CMD ["serve", "post"]
