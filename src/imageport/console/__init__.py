"""The web console: what the vendor's management console does for image import, in a browser.

``imageport serve`` serves it on the image API's port under ``/console/`` (one origin for pages
and their scripts, one listener to secure). It is a third entry point beside the image API and
the bucket API, and as thin: each page parses its request, calls the service functions the API
routes call (so the console can do nothing those routes cannot, for nobody they would not do it
for) and renders the result. The file bytes of an upload never pass through it: the browser
sends them to the bucket API itself, in multipart parts, with URLs the console presigns for
the signed-in key.

Why server-rendered pages with small scripts rather than a client application: every page works
with links and forms (keyboard and screen reader use come with the HTML), nothing is built at
install time, the texts of both languages are chosen on the server, and the few live parts
(upload progress, job progress, the terminals) are small scripts that read JSON routes of the
console itself.

Modules:

* :mod:`.app`: the application and its route table; :mod:`.pages`: what every page goes through
  (session cookie, language, anti-forgery check, error pages, security headers);
* :mod:`.i18n` and :mod:`.messages`: the texts, English and Simplified Chinese;
* one module per area of the console (:mod:`.signin`, ...), each with its ``ROUTES``;
* ``templates/`` (Jinja2, autoescaped) and ``static/`` (CSS, scripts, fonts: all shipped in the
  package with their licences, nothing fetched from elsewhere).
"""
