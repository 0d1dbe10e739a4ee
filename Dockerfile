# The modelrollout operator image: `modelrollout run ...` (the Helm chart passes the flags).
# Build: docker build -t ghcr.io/modelrollout/modelrollout:0.1.0 .
# Without Docker, `make image` builds the equivalent image from Debian's packages and PyPI
# (operator/image/build.sh, docs/image.md); that is the build the test suite runs.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /install /usr/local
# A fixed numeric UID so that runAsNonRoot can be verified by the kubelet.
RUN groupadd --system --gid 10001 modelrollout \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin modelrollout
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["modelrollout"]
CMD ["run", "--help"]
