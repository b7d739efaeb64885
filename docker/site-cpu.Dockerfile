# A hospital site (CPU torch). Run: -v SITE_KIT:/user_config:ro -v DATA:/data:ro, with the kit's
# local/fedhealth_site.json saying "data_root": "/data". Build context: docker/. `make images`.
ARG RUNTIME=fedhealth/runtime:latest
FROM ${RUNTIME}
LABEL org.opencontainers.image.title="fedhealth site (CPU)" \
      org.opencontainers.image.description="NVIDIA FLARE 2.9 client with the fedhealth kit, CPU torch; startup kit mounted on /user_config"
ENV FEDHEALTH_ROLE=site
