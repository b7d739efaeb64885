# The fedhealth runtime: Python, the kit and every dependency, installed offline from the wheelhouse.
# Build context: the checkout (its .dockerignore sends only wheelhouse/, wheelhouse-gpu/ and
# docker/entrypoint.sh). `make images` builds it; see docs/deployment.md ("Containers").
#
# BASE needs python3 with venv, of the Python minor version the wheelhouse was built for (3.11 here):
# by default the Debian bookworm root file system `scripts/images.py` makes with debootstrap.
# WHEELHOUSE is `wheelhouse` (CPU torch, `make wheelhouse`) or `wheelhouse-gpu` (CUDA torch).
# No startup kit, key or certificate is ever copied in: kits are mounted at run time on /user_config.
ARG BASE=fedhealth/debian-base:bookworm

FROM ${BASE} AS install
ARG WHEELHOUSE=wheelhouse
COPY ${WHEELHOUSE}/ /tmp/wheelhouse/
# --no-index: nothing comes from a package index; --require-hashes: every wheel matches the lock.
RUN python3 -m venv /opt/fedhealth/venv \
 && PIP_CONFIG_FILE=/dev/null /opt/fedhealth/venv/bin/pip install --no-cache-dir --no-index \
      --find-links /tmp/wheelhouse --require-hashes -r /tmp/wheelhouse/requirements.lock \
 && /opt/fedhealth/venv/bin/python -c "import fedhealth, nvflare, torch" \
 && find /opt/fedhealth/venv -name __pycache__ -prune -exec rm -rf {} +

# The final image: the base, the installed environment (not the wheels) and an unprivileged user.
FROM ${BASE}
COPY --from=install /opt/fedhealth/venv /opt/fedhealth/venv
RUN groupadd --gid 10001 fedhealth \
 && useradd --uid 10001 --gid 10001 --home-dir /vault --no-create-home --shell /usr/sbin/nologin fedhealth \
 && mkdir -p /user_config /vault/workspace \
 && chown fedhealth:fedhealth /vault /vault/workspace
COPY docker/entrypoint.sh /usr/local/bin/fedhealth-entrypoint
ENV PATH=/opt/fedhealth/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NVFLARE_ENABLE_JEMALLOC_PRELOAD=false
USER fedhealth
WORKDIR /vault/workspace
VOLUME ["/vault/workspace"]
ENTRYPOINT ["/usr/local/bin/fedhealth-entrypoint"]
