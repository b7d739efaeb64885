# The admin console (or a FLARE API script: pass a command). Run: -it -v ADMIN_KIT:/user_config:ro.
# Build context: docker/. `make images`.
ARG RUNTIME=fedhealth/runtime:latest
FROM ${RUNTIME}
LABEL org.opencontainers.image.title="fedhealth admin console" \
      org.opencontainers.image.description="NVIDIA FLARE 2.9 admin console with the fedhealth kit; startup kit mounted on /user_config"
ENV FEDHEALTH_ROLE=admin
