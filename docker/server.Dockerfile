# The FLARE server. Run: -v SERVER_KIT:/user_config:ro (the server's startup kit, never baked in).
# Build context: docker/ (nothing is copied). `make images`.
ARG RUNTIME=fedhealth/runtime:latest
FROM ${RUNTIME}
LABEL org.opencontainers.image.title="fedhealth server" \
      org.opencontainers.image.description="NVIDIA FLARE 2.9 server with the fedhealth kit; startup kit mounted on /user_config"
ENV FEDHEALTH_ROLE=server
