# A hospital site with a GPU: FROM the GPU runtime, i.e. runtime.Dockerfile built with
# WHEELHOUSE=wheelhouse-gpu (the CUDA torch wheel, whose nvidia-* wheels bring the CUDA user-space
# libraries) and, if the consortium wants, BASE=an nvidia/cuda image with Python 3.11 and venv.
# Run with `--gpus all` (NVIDIA Container Toolkit on the host). Build context: docker/.
# `make images-gpu`.
ARG RUNTIME=fedhealth/runtime-gpu:latest
FROM ${RUNTIME}
LABEL org.opencontainers.image.title="fedhealth site (GPU)" \
      org.opencontainers.image.description="NVIDIA FLARE 2.9 client with the fedhealth kit, CUDA torch; startup kit mounted on /user_config"
ENV FEDHEALTH_ROLE=site \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
