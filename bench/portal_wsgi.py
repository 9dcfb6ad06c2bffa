"""The portal's Flask app for gunicorn (`gunicorn -k eventlet ... portal_wsgi:app`), configured from the environment.

Only the web side: the outbox relay and the mail worker of `helpdesk run portal` are not started here,
which the API and page benchmarks do not need (they write no portal events).
"""
from helpdesk.common import config
from helpdesk.portal.app import create_app

app = create_app(config.load())
