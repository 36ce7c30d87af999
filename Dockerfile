# One image for every voicebank service; compose.yaml picks the command per service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

RUN pip install --no-cache-dir uv==0.13.8 && useradd --create-home --uid 10001 voicebank \
    && mkdir /state && chown voicebank /state

WORKDIR /app
# Dependencies first, from the lock file only, so code changes do not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY keys ./keys
COPY issuer ./issuer
COPY mcp_server ./mcp_server
COPY orchestrator ./orchestrator
RUN uv sync --frozen --no-dev

USER voicebank
VOLUME ["/state"]
EXPOSE 8000 8001
CMD ["voicebank", "up"]
