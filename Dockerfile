# Container image for the agent (the Helm chart under deploy/helm runs it).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY agent agent
COPY detectors detectors
COPY sinks sinks
COPY config config
RUN pip install --no-cache-dir ".[kafka,aws,azure]" && useradd --uid 10001 --no-create-home agent
USER 10001
EXPOSE 9464
ENTRYPOINT ["finops-agent"]
CMD ["run"]
