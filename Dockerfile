# One image for web, worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=chom.settings.production \
    STATIC_ROOT=/app/static

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin chom
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# Static files are part of the image. Production settings insist on their secrets even for
# collectstatic: throwaway build-only values, not kept in any layer's environment.
RUN SECRET_KEY=build-only-not-a-secret-build-only-not-a-secret-build-only \
    DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost:6379/0 \
    ALLOWED_HOSTS=localhost FIELD_ENCRYPTION_KEY=7Mlf4o0a3jdjZ2-6xqq5cC2m2S0lyq6R9kKo1QqjDHk= \
    python manage.py collectstatic --noinput -v 0

USER chom
EXPOSE 8000
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py"]
