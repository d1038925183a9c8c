# cwm CLI in a container. Build: docker build -t cwm .   Run: docker run --rm cwm doctor
# The sandbox's namespace layers need: --security-opt seccomp=unconfined --cap-add SYS_ADMIN
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap libseccomp2 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/cwm
COPY pyproject.toml README.md ./
COPY src ./src
COPY examples ./examples
RUN pip install --no-cache-dir '.[mujoco]'

# runs as root so the sandbox can drop its children to uid 65534 (nobody)
WORKDIR /work
ENTRYPOINT ["cwm"]
CMD ["check", "/opt/cwm/examples/cartpole_cwm.py", "--env", "CartPole-v1"]
