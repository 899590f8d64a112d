"""Reply drafts for agents, assembled from the ticket's intent and the best KB article.

The default path is offline: a short template per intent in the customer's language
(English when the language has no templates), greeting the customer by name and pointing
to the suggested article. An external text generator can be plugged in through
:class:`ResponseProvider`; it receives the template draft as its starting point, and any
failure or empty answer falls back to that draft so the pipeline never depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from models.kb import KbSuggestion

INTENTS: tuple[str, ...] = (
    "refund",
    "cancellation",
    "complaint",
    "how_to",
    "bug_report",
    "account_access",
    "billing_question",
    "feedback",
    "other",
)
FALLBACK_LANGUAGE = "en"
_MAX_SUBJECT_CHARS = 120


@dataclass(frozen=True)
class _Phrases:
    greeting: str
    greeting_named: str
    thanks: str
    thanks_subject: str
    article: str
    closing: str
    intents: dict[str, str]


_PHRASES: dict[str, _Phrases] = {
    "en": _Phrases(
        greeting="Hello,",
        greeting_named="Hello {name},",
        thanks="Thank you for contacting us.",
        thanks_subject='Thank you for contacting us about "{subject}".',
        article='This article may help: "{title}" ({link}).',
        closing="Kind regards,\nYour support team",
        intents={
            "refund": "We have received your refund request and are reviewing the charge. "
            "Once it is approved, the amount goes back to your original payment method.",
            "cancellation": "We have received your cancellation request. Our next reply "
            "confirms the effective date and any final charges.",
            "complaint": "We are sorry about your experience. A member of our team is "
            "looking into what happened and will come back to you with a resolution.",
            "how_to": "We are happy to help you with this.",
            "bug_report": "Thank you for reporting this problem. We are trying to reproduce "
            "it; screenshots, error messages or the time it happened help us fix it sooner.",
            "account_access": "We understand you cannot access your account. For your "
            "security we verify your identity before changing anything; please never send "
            "us your password.",
            "billing_question": "We are checking the billing details of your account and "
            "will answer your question shortly.",
            "feedback": "Thank you for your feedback. We have shared it with the team responsible.",
            "other": "We have received your request and will get back to you shortly.",
        },
    ),
    "de": _Phrases(
        greeting="Guten Tag,",
        greeting_named="Guten Tag {name},",
        thanks="Vielen Dank für Ihre Nachricht.",
        thanks_subject="Vielen Dank für Ihre Nachricht zum Thema „{subject}“.",
        article="Dieser Artikel könnte Ihnen helfen: „{title}“ ({link}).",
        closing="Mit freundlichen Grüßen\nIhr Support-Team",
        intents={
            "refund": "Wir haben Ihre Bitte um Erstattung erhalten und prüfen die Zahlung. "
            "Nach der Freigabe wird der Betrag auf Ihr ursprüngliches Zahlungsmittel "
            "zurückgebucht.",
            "cancellation": "Wir haben Ihre Kündigung erhalten. In unserer nächsten Antwort "
            "bestätigen wir das Datum, zu dem sie wirksam wird, und eventuelle letzte "
            "Abrechnungen.",
            "complaint": "Es tut uns leid, dass Sie diese Erfahrung gemacht haben. Unser "
            "Team prüft den Vorfall und meldet sich mit einer Lösung bei Ihnen.",
            "how_to": "Gerne helfen wir Ihnen dabei weiter.",
            "bug_report": "Danke, dass Sie uns das Problem gemeldet haben. Wir versuchen, "
            "es nachzustellen; Screenshots, Fehlermeldungen oder der Zeitpunkt des "
            "Auftretens helfen uns, es schneller zu beheben.",
            "account_access": "Wir verstehen, dass Sie nicht auf Ihr Konto zugreifen "
            "können. Zu Ihrer Sicherheit bestätigen wir Ihre Identität, bevor wir etwas "
            "ändern; bitte senden Sie uns niemals Ihr Passwort.",
            "billing_question": "Wir prüfen die Abrechnungsdaten Ihres Kontos und "
            "beantworten Ihre Frage in Kürze.",
            "feedback": "Vielen Dank für Ihr Feedback. Wir haben es an das zuständige Team "
            "weitergegeben.",
            "other": "Wir haben Ihre Anfrage erhalten und melden uns in Kürze bei Ihnen.",
        },
    ),
    "fr": _Phrases(
        greeting="Bonjour,",
        greeting_named="Bonjour {name},",
        thanks="Merci de nous avoir contactés.",
        thanks_subject="Merci de nous avoir contactés au sujet de « {subject} ».",
        article="Cet article pourrait vous aider : « {title} » ({link}).",
        closing="Cordialement,\nL'équipe support",
        intents={
            "refund": "Nous avons bien reçu votre demande de remboursement et vérifions le "
            "paiement concerné. Une fois validé, le montant sera recrédité sur votre moyen "
            "de paiement d'origine.",
            "cancellation": "Nous avons bien reçu votre demande de résiliation. Notre "
            "prochaine réponse vous confirmera la date d'effet et les éventuels derniers "
            "frais.",
            "complaint": "Nous sommes désolés de ce désagrément. Un membre de notre équipe "
            "examine la situation et reviendra vers vous avec une solution.",
            "how_to": "Nous serons ravis de vous aider.",
            "bug_report": "Merci de nous avoir signalé ce problème. Nous cherchons à le "
            "reproduire ; des captures d'écran, les messages d'erreur ou l'heure de "
            "l'incident nous aideront à le corriger plus vite.",
            "account_access": "Nous comprenons que vous ne pouvez pas accéder à votre "
            "compte. Pour votre sécurité, nous vérifions votre identité avant toute "
            "modification ; ne nous communiquez jamais votre mot de passe.",
            "billing_question": "Nous vérifions les informations de facturation de votre "
            "compte et répondrons très prochainement à votre question.",
            "feedback": "Merci pour votre retour. Nous l'avons transmis à l'équipe concernée.",
            "other": "Nous avons bien reçu votre demande et reviendrons vers vous rapidement.",
        },
    ),
    "es": _Phrases(
        greeting="Hola:",
        greeting_named="Hola, {name}:",
        thanks="Gracias por ponerse en contacto con nosotros.",
        thanks_subject="Gracias por escribirnos sobre «{subject}».",
        article="Este artículo puede ayudarle: «{title}» ({link}).",
        closing="Saludos cordiales,\nEl equipo de soporte",
        intents={
            "refund": "Hemos recibido su solicitud de reembolso y estamos revisando el "
            "cargo. Una vez aprobado, el importe se devolverá a su método de pago original.",
            "cancellation": "Hemos recibido su solicitud de cancelación. En nuestra próxima "
            "respuesta le confirmaremos la fecha efectiva y los posibles cargos finales.",
            "complaint": "Lamentamos lo ocurrido. Un miembro de nuestro equipo está "
            "revisando el caso y se pondrá en contacto con usted con una solución.",
            "how_to": "Con gusto le ayudamos con esto.",
            "bug_report": "Gracias por informarnos de este problema. Estamos intentando "
            "reproducirlo; capturas de pantalla, mensajes de error o la hora en que ocurrió "
            "nos ayudarán a corregirlo antes.",
            "account_access": "Entendemos que no puede acceder a su cuenta. Por su "
            "seguridad, verificamos su identidad antes de realizar cualquier cambio; nunca "
            "nos envíe su contraseña.",
            "billing_question": "Estamos revisando los datos de facturación de su cuenta y "
            "responderemos a su pregunta en breve.",
            "feedback": "Gracias por sus comentarios. Los hemos compartido con el equipo "
            "responsable.",
            "other": "Hemos recibido su solicitud y le responderemos en breve.",
        },
    ),
}
_LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish"}


class ResponseProvider(Protocol):
    """An external text generator (for example a hosted language model) behind one call."""

    def draft(self, prompt: str) -> str:
        """Return the reply text for ``prompt``."""
        ...


@dataclass(frozen=True)
class ResponseDraft:
    """A reply an agent can review and send."""

    text: str
    source: Literal["template", "provider"]
    article_id: int | None


class ResponseSuggester:
    """Drafts a first reply from the intent, the customer's language and the best article.

    Args:
        provider: Optional external generator; without one, drafts come from templates.
        article_url: Format string for an article's link, with ``{article_id}``
            (e.g. ``"https://help.example.com/kb/{article_id}"``); without one the link
            text is ``KB-<id>``.

    Example:
        >>> from models.kb import KbSuggestion
        >>> article = KbSuggestion(12, "Request a refund", 3.2, ("matched refund",))
        >>> draft = ResponseSuggester().suggest(
        ...     intent="refund", language="de", customer_name="Anna",
        ...     article=article, subject="Doppelte Abbuchung",
        ... )
        >>> print(draft.text.splitlines()[0], draft.source, draft.article_id)
        Guten Tag Anna, template 12
    """

    def __init__(
        self, provider: ResponseProvider | None = None, *, article_url: str | None = None
    ) -> None:
        self.provider = provider
        self.article_url = article_url

    def suggest(
        self,
        *,
        intent: str,
        language: str,
        customer_name: str | None,
        article: KbSuggestion | None,
        subject: str,
    ) -> ResponseDraft:
        """Draft a reply; unknown intents use ``other``, unknown languages English."""
        template = self._template_text(
            intent=intent,
            language=_language_key(language),
            customer_name=customer_name,
            article=article,
            subject=subject,
        )
        article_id = article.article_id if article is not None else None
        if self.provider is not None:
            prompt = self._prompt(
                template, intent=intent, language=_language_key(language), subject=subject
            )
            try:
                generated = self.provider.draft(prompt).strip()
            # Whatever goes wrong in an external generator, the agent still gets a draft;
            # ``source`` tells the caller which one it is.
            except Exception:
                generated = ""
            if generated:
                return ResponseDraft(generated, "provider", article_id)
        return ResponseDraft(template, "template", article_id)

    def article_link(self, article_id: int) -> str:
        """Link text of an article in drafts."""
        if self.article_url is None:
            return f"KB-{article_id}"
        return self.article_url.format(article_id=article_id)

    def _template_text(
        self,
        *,
        intent: str,
        language: str,
        customer_name: str | None,
        article: KbSuggestion | None,
        subject: str,
    ) -> str:
        phrases = _PHRASES[language]
        name = " ".join((customer_name or "").split())
        greeting = phrases.greeting_named.format(name=name) if name else phrases.greeting
        clean_subject = _short_subject(subject)
        thanks = (
            phrases.thanks_subject.format(subject=clean_subject)
            if clean_subject
            else phrases.thanks
        )
        body = phrases.intents.get(intent, phrases.intents["other"])
        paragraphs = [greeting, f"{thanks} {body}"]
        if article is not None:
            link = self.article_link(article.article_id)
            paragraphs.append(phrases.article.format(title=article.title.strip(), link=link))
        paragraphs.append(phrases.closing)
        return "\n\n".join(paragraphs)

    @staticmethod
    def _prompt(template: str, *, intent: str, language: str, subject: str) -> str:
        return (
            "Rewrite the draft below as a short, professional reply from a customer "
            f"support agent, in {_LANGUAGE_NAMES[language]}. Keep the greeting, the article "
            "reference and every commitment as they are; promise nothing more.\n"
            f"Intent: {intent}\n"
            f"Ticket subject: {_short_subject(subject)}\n"
            f"Draft:\n{template}"
        )


def _language_key(language: str) -> str:
    # "de-AT", "pt_BR" → "de", "pt"; languages without templates get English.
    code = language.replace("_", "-").split("-", 1)[0].strip().casefold()
    return code if code in _PHRASES else FALLBACK_LANGUAGE


def _short_subject(subject: str) -> str:
    # Subjects are user input: one line, bounded, so a pasted log cannot swamp the reply.
    flat = " ".join(subject.split())
    if len(flat) <= _MAX_SUBJECT_CHARS:
        return flat
    return flat[: _MAX_SUBJECT_CHARS - 1].rstrip() + "…"
