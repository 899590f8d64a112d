"""Text templates for the workload generator: tickets, replies and KB articles in four languages.

Templates are ``str.format`` strings over a fixed set of slots (product, order number, error
code, ...). Every category's English templates name the category's vocabulary (invoice,
error, password, parcel, ...) so a text classifier has a real signal to learn, while the
other languages use their own words for the same things. Nothing here performs I/O; the
caller passes a seeded :class:`random.Random` so rendering is reproducible.

Kept as one module: it is data: the generator's text templates in four
languages.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

LANGUAGES = ("en", "de", "fr", "es")

PRODUCTS = (
    "Nimbus Router X2",
    "Aquila Cloud Backup",
    "Orbit CRM",
    "Lumen POS Terminal",
    "Vela Mobile App",
    "Kestrel API",
    "Halcyon Smart Hub",
    "Tessera Analytics",
)
PLANS = ("Starter", "Team", "Business", "Enterprise Plus")
CARRIERS = ("DHL", "UPS", "FedEx", "GLS", "DPD", "Correos", "La Poste")
ERROR_FORMATS = ("E-{n4}", "ERR_SYNC_{n3}", "HTTP {http}", "0x{hex}", "AUTH-{n3}")
HTTP_CODES = (500, 502, 503, 504, 429, 401, 403)

FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "en": ("Olivia", "James", "Amelia", "Noah", "Grace", "Liam", "Sophie", "Ethan", "Chloe"),
    "de": ("Lukas", "Anna", "Jonas", "Lea", "Felix", "Hannah", "Moritz", "Klara", "Jan"),
    "fr": ("Camille", "Louis", "Chloé", "Hugo", "Léa", "Jules", "Manon", "Arthur", "Inès"),
    "es": ("Lucía", "Hugo", "Martina", "Pablo", "Sofía", "Mateo", "Carmen", "Diego", "Elena"),
}
LAST_NAMES: dict[str, tuple[str, ...]] = {
    "en": ("Smith", "Johnson", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Clarke"),
    "de": ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Wagner", "Becker", "Hoffmann"),
    "fr": ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand"),
    "es": ("García", "Fernández", "López", "Martínez", "Sánchez", "Pérez", "Gómez", "Ruiz"),
}
REGIONS: dict[str, tuple[str, ...]] = {
    "en": ("us", "us", "uk", "ca", "au", "ie"),
    "de": ("de", "de", "at", "ch"),
    "fr": ("fr", "fr", "be", "ca", "ch"),
    "es": ("es", "es", "mx", "ar", "co"),
}
ORG_WORDS = (
    "Acme",
    "Northwind",
    "Bluefin",
    "Crescent",
    "Evergreen",
    "Granite",
    "Harbor",
    "Juniper",
    "Meridian",
    "Pinnacle",
    "Summit",
    "Willow",
)
ORG_SUFFIXES = ("Logistics", "Foods", "Health", "Studios", "Retail", "Labs", "Energy", "Travel")
MAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")

# Subjects and descriptions per language and category. Slots: {product} {plan} {order}
# {invoice} {amount} {error} {carrier} {tracking} {days} {version} {date}.
SUBJECTS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "billing": (
            "Charged twice for invoice {invoice}",
            "Refund request for my {plan} subscription",
            "Wrong amount on my latest invoice",
            "Payment failed but card was debited",
            "Question about billing for {product}",
        ),
        "technical": (
            "{product} keeps crashing with error {error}",
            "Error {error} when syncing data",
            "{product} not working after update to {version}",
            "Cannot connect to {product}: timeout",
            "Bug: export fails with {error}",
        ),
        "account": (
            "Cannot log in to my account",
            "Password reset email never arrives",
            "Please change the email address on my account",
            "Two-factor authentication locked me out",
            "How do I delete my account?",
        ),
        "shipping": (
            "Order {order} has not arrived",
            "Parcel {tracking} stuck in transit",
            "Wrong item delivered for order {order}",
            "Delivery address change for order {order}",
            "Package damaged on delivery",
        ),
        "general": (
            "Question about {product}",
            "Feedback on your service",
            "Do you offer training for {product}?",
            "Where can I find the documentation?",
            "General enquiry about opening hours",
        ),
    },
    "de": {
        "billing": (
            "Doppelte Abbuchung für Rechnung {invoice}",
            "Rückerstattung für mein {plan}-Abo",
            "Falscher Betrag auf der letzten Rechnung",
            "Zahlung fehlgeschlagen, Konto trotzdem belastet",
            "Frage zur Abrechnung von {product}",
        ),
        "technical": (
            "{product} stürzt ständig ab (Fehler {error})",
            "Fehler {error} bei der Synchronisierung",
            "{product} funktioniert nach Update auf {version} nicht mehr",
            "Keine Verbindung zu {product} möglich",
            "Export bricht mit Fehlercode {error} ab",
        ),
        "account": (
            "Anmeldung in mein Konto nicht möglich",
            "E-Mail zum Zurücksetzen des Passworts kommt nicht an",
            "Bitte E-Mail-Adresse in meinem Konto ändern",
            "Durch Zwei-Faktor-Authentifizierung ausgesperrt",
            "Wie kann ich mein Benutzerkonto löschen?",
        ),
        "shipping": (
            "Bestellung {order} ist nicht angekommen",
            "Paket {tracking} hängt seit Tagen fest",
            "Falscher Artikel geliefert (Bestellung {order})",
            "Lieferadresse für Bestellung {order} ändern",
            "Paket beschädigt zugestellt",
        ),
        "general": (
            "Frage zu {product}",
            "Feedback zu Ihrem Service",
            "Gibt es Schulungen für {product}?",
            "Wo finde ich die Dokumentation?",
            "Allgemeine Anfrage zu Ihren Öffnungszeiten",
        ),
    },
    "fr": {
        "billing": (
            "Double prélèvement pour la facture {invoice}",
            "Demande de remboursement de mon abonnement {plan}",
            "Montant incorrect sur ma dernière facture",
            "Paiement refusé mais carte débitée",
            "Question sur la facturation de {product}",
        ),
        "technical": (
            "{product} plante sans arrêt (erreur {error})",
            "Erreur {error} lors de la synchronisation",
            "{product} ne fonctionne plus depuis la mise à jour {version}",
            "Impossible de se connecter à {product}",
            "L'export échoue avec le code {error}",
        ),
        "account": (
            "Impossible de me connecter à mon compte",
            "Je ne reçois pas l'e-mail de réinitialisation du mot de passe",
            "Changer l'adresse e-mail de mon compte",
            "Bloqué par l'authentification à deux facteurs",
            "Comment supprimer mon compte ?",
        ),
        "shipping": (
            "Commande {order} non reçue",
            "Colis {tracking} bloqué en transit",
            "Mauvais article livré pour la commande {order}",
            "Modifier l'adresse de livraison de la commande {order}",
            "Colis arrivé endommagé",
        ),
        "general": (
            "Question sur {product}",
            "Retour sur votre service",
            "Proposez-vous des formations pour {product} ?",
            "Où trouver la documentation ?",
            "Demande générale sur vos horaires",
        ),
    },
    "es": {
        "billing": (
            "Cobro duplicado de la factura {invoice}",
            "Solicitud de reembolso de mi suscripción {plan}",
            "Importe incorrecto en mi última factura",
            "El pago falló pero se cargó en la tarjeta",
            "Consulta sobre la facturación de {product}",
        ),
        "technical": (
            "{product} se cierra continuamente con el error {error}",
            "Error {error} al sincronizar los datos",
            "{product} no funciona tras actualizar a {version}",
            "No puedo conectarme a {product}",
            "La exportación falla con el código {error}",
        ),
        "account": (
            "No puedo iniciar sesión en mi cuenta",
            "No llega el correo para restablecer la contraseña",
            "Cambiar el correo electrónico de mi cuenta",
            "Bloqueado por la verificación en dos pasos",
            "¿Cómo elimino mi cuenta?",
        ),
        "shipping": (
            "El pedido {order} no ha llegado",
            "Paquete {tracking} detenido en tránsito",
            "Artículo equivocado en el pedido {order}",
            "Cambiar la dirección de entrega del pedido {order}",
            "Paquete dañado en la entrega",
        ),
        "general": (
            "Pregunta sobre {product}",
            "Comentarios sobre su servicio",
            "¿Ofrecen formación para {product}?",
            "¿Dónde encuentro la documentación?",
            "Consulta general sobre horarios",
        ),
    },
}

BODIES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "billing": (
            "My card was charged {amount} twice for invoice {invoice}. Please refund the "
            "duplicate payment.",
            "I cancelled my {plan} subscription on {date} but I was still billed {amount}. "
            "I would like a refund.",
            "The invoice {invoice} shows {amount}, but our plan should cost less. Can you check "
            "the billing and send a corrected invoice?",
            "The payment page said the transaction failed, yet my bank statement shows a charge "
            "of {amount}. Was the payment received?",
        ),
        "technical": (
            "Since this morning {product} crashes every time I open the dashboard. The log shows "
            "error {error}. I already restarted and reinstalled version {version}.",
            "Synchronisation stops halfway with error {error}. The bug started after the update "
            "to {version}. Steps to reproduce: open {product}, click sync, wait a minute.",
            "{product} times out when connecting to the server. Other services work fine, so "
            "the network is not the issue. Error code: {error}.",
            "Exporting a report fails with {error}. It worked last week; nothing changed on our "
            "side except installing {version}.",
        ),
        "account": (
            "I cannot log in: the login page says my password is wrong even after a reset. "
            "My username has not changed.",
            "I requested a password reset three times but no email arrives. I checked the spam "
            "folder too. Please help me regain access to my account.",
            "Please update the email address on my account profile; I no longer have access to "
            "the old mailbox.",
            "I replaced my phone and lost my two-factor authentication codes, so my account is "
            "locked. How can I verify my identity?",
        ),
        "shipping": (
            "I ordered on {date} (order {order}) and the parcel has still not been delivered. "
            "Tracking with {carrier} shows no update for {days} days.",
            "The tracking number {tracking} has been stuck at the {carrier} depot for {days} "
            "days. When will my package arrive?",
            "I received the wrong item for order {order}. I need a return label and the "
            "correct product shipped.",
            "The box arrived damaged and the {product} inside is broken. Can you send a "
            "replacement? Order {order}.",
        ),
        "general": (
            "I would like to know more about {product} and whether it fits a team of our size.",
            "Just wanted to say your team has been helpful, but your website could explain the "
            "{plan} plan better.",
            "Do you provide onboarding sessions or training material for new users of {product}?",
            "Where can I find the user guide and documentation for {product}?",
        ),
    },
    "de": {
        "billing": (
            "Für die Rechnung {invoice} wurden mir {amount} zweimal abgebucht. Bitte erstatten "
            "Sie die doppelte Zahlung.",
            "Ich habe mein {plan}-Abo am {date} gekündigt, wurde aber trotzdem mit {amount} "
            "belastet. Ich bitte um Rückerstattung.",
            "Auf der Rechnung {invoice} stehen {amount}, unser Tarif ist aber günstiger. Bitte "
            "prüfen Sie die Abrechnung.",
            "Die Zahlung wurde als fehlgeschlagen angezeigt, mein Konto wurde aber mit {amount} "
            "belastet. Ist die Zahlung eingegangen?",
        ),
        "technical": (
            "Seit heute früh stürzt {product} beim Öffnen des Dashboards ab. Im Log steht "
            "Fehler {error}. Neustart und Neuinstallation von {version} haben nicht geholfen.",
            "Die Synchronisierung bricht mit Fehler {error} ab. Das Problem besteht seit dem "
            "Update auf {version}.",
            "{product} bekommt beim Verbinden mit dem Server eine Zeitüberschreitung. "
            "Fehlercode: {error}.",
            "Der Export eines Berichts schlägt mit {error} fehl. Letzte Woche ging es noch.",
        ),
        "account": (
            "Ich kann mich nicht anmelden, das Passwort wird auch nach dem Zurücksetzen abgelehnt.",
            "Ich habe dreimal ein neues Passwort angefordert, aber keine E-Mail erhalten, auch "
            "nicht im Spam-Ordner.",
            "Bitte ändern Sie die E-Mail-Adresse in meinem Benutzerkonto, ich habe keinen "
            "Zugriff mehr auf das alte Postfach.",
            "Neues Handy, die Codes für die Zwei-Faktor-Authentifizierung sind weg und mein "
            "Konto ist gesperrt.",
        ),
        "shipping": (
            "Ich habe am {date} bestellt (Bestellung {order}), die Lieferung ist noch nicht da. "
            "Die Sendungsverfolgung bei {carrier} zeigt seit {days} Tagen nichts Neues.",
            "Die Sendung {tracking} liegt seit {days} Tagen im {carrier}-Depot. Wann kommt mein "
            "Paket?",
            "Für die Bestellung {order} wurde der falsche Artikel geliefert. Ich brauche ein "
            "Rücksendeetikett.",
            "Das Paket kam beschädigt an, {product} ist kaputt. Bitte Ersatz schicken, "
            "Bestellung {order}.",
        ),
        "general": (
            "Ich möchte mehr über {product} erfahren und ob es für unser Team passt.",
            "Ihr Team war sehr hilfsbereit, aber auf der Webseite ist der Tarif {plan} schlecht "
            "erklärt.",
            "Bieten Sie Schulungen oder Einführungsmaterial für {product} an?",
            "Wo finde ich das Handbuch und die Dokumentation zu {product}?",
        ),
    },
    "fr": {
        "billing": (
            "Ma carte a été débitée deux fois de {amount} pour la facture {invoice}. Merci de "
            "rembourser le doublon.",
            "J'ai résilié mon abonnement {plan} le {date} mais j'ai encore été prélevé de "
            "{amount}. Je souhaite un remboursement.",
            "La facture {invoice} indique {amount}, ce qui ne correspond pas à notre offre. "
            "Pouvez-vous vérifier la facturation ?",
            "Le paiement a échoué d'après le site, pourtant ma banque affiche un débit de "
            "{amount}.",
        ),
        "technical": (
            "Depuis ce matin, {product} plante à l'ouverture du tableau de bord. Le journal "
            "affiche l'erreur {error}. J'ai déjà réinstallé la version {version}.",
            "La synchronisation s'arrête avec l'erreur {error} depuis la mise à jour {version}.",
            "{product} dépasse le délai de connexion au serveur. Code d'erreur : {error}.",
            "L'export d'un rapport échoue avec {error}. Cela fonctionnait la semaine dernière.",
        ),
        "account": (
            "Je n'arrive pas à me connecter : le mot de passe est refusé même après "
            "réinitialisation.",
            "J'ai demandé trois fois la réinitialisation du mot de passe mais je ne reçois aucun "
            "e-mail.",
            "Merci de modifier l'adresse e-mail de mon compte, je n'ai plus accès à l'ancienne.",
            "J'ai changé de téléphone et perdu mes codes d'authentification à deux facteurs, "
            "mon compte est bloqué.",
        ),
        "shipping": (
            "J'ai commandé le {date} (commande {order}) et le colis n'est toujours pas livré. "
            "Le suivi {carrier} n'a pas bougé depuis {days} jours.",
            "Le colis {tracking} est bloqué au dépôt {carrier} depuis {days} jours. Quand "
            "sera-t-il livré ?",
            "J'ai reçu le mauvais article pour la commande {order}. Il me faut une étiquette "
            "de retour.",
            "Le carton est arrivé abîmé et {product} est cassé. Pouvez-vous envoyer un "
            "remplacement ? Commande {order}.",
        ),
        "general": (
            "J'aimerais en savoir plus sur {product} et savoir s'il convient à notre équipe.",
            "Votre équipe est très serviable, mais l'offre {plan} est mal expliquée sur le site.",
            "Proposez-vous des formations ou des guides pour débuter avec {product} ?",
            "Où puis-je trouver le manuel et la documentation de {product} ?",
        ),
    },
    "es": {
        "billing": (
            "Me han cobrado {amount} dos veces por la factura {invoice}. Por favor, devuelvan "
            "el pago duplicado.",
            "Cancelé mi suscripción {plan} el {date} pero me volvieron a cobrar {amount}. "
            "Solicito un reembolso.",
            "La factura {invoice} indica {amount}, que no corresponde a nuestro plan. ¿Pueden "
            "revisar la facturación?",
            "La web dijo que el pago había fallado, pero el banco muestra un cargo de {amount}.",
        ),
        "technical": (
            "Desde esta mañana {product} se cierra al abrir el panel. El registro muestra el "
            "error {error}. Ya reinstalé la versión {version}.",
            "La sincronización se detiene con el error {error} desde la actualización a {version}.",
            "{product} agota el tiempo de espera al conectar con el servidor. Código de error: "
            "{error}.",
            "Exportar un informe falla con {error}. La semana pasada funcionaba.",
        ),
        "account": (
            "No puedo iniciar sesión: la contraseña es rechazada incluso después de restablecerla.",
            "He pedido tres veces restablecer la contraseña y no recibo ningún correo.",
            "Por favor, cambien el correo electrónico de mi cuenta; ya no tengo acceso al antiguo.",
            "Cambié de móvil y perdí los códigos de verificación en dos pasos; mi cuenta está "
            "bloqueada.",
        ),
        "shipping": (
            "Hice el pedido {order} el {date} y todavía no ha llegado. El seguimiento de "
            "{carrier} no cambia desde hace {days} días.",
            "El envío {tracking} lleva {days} días parado en el almacén de {carrier}. ¿Cuándo "
            "llegará mi paquete?",
            "Recibí un artículo equivocado en el pedido {order}. Necesito una etiqueta de "
            "devolución.",
            "El paquete llegó dañado y {product} está roto. ¿Pueden enviar un reemplazo? "
            "Pedido {order}.",
        ),
        "general": (
            "Me gustaría saber más sobre {product} y si encaja con nuestro equipo.",
            "Su equipo ha sido muy amable, pero el plan {plan} no se explica bien en la web.",
            "¿Ofrecen formación o material de introducción para {product}?",
            "¿Dónde puedo encontrar el manual y la documentación de {product}?",
        ),
    },
}

GREETINGS: dict[str, tuple[str, ...]] = {
    "en": ("Hello,", "Hi team,", "Dear support,", "Good morning,", ""),
    "de": ("Hallo,", "Guten Tag,", "Sehr geehrte Damen und Herren,", ""),
    "fr": ("Bonjour,", "Madame, Monsieur,", "Bonjour l'équipe,", ""),
    "es": ("Hola,", "Buenos días,", "Estimado equipo:", ""),
}
SIGN_OFFS: dict[str, tuple[str, ...]] = {
    "en": ("Thanks,\n{name}", "Best regards,\n{name}", "{name}", "Cheers, {name}"),
    "de": ("Danke,\n{name}", "Viele Grüße\n{name}", "Mit freundlichen Grüßen\n{name}"),
    "fr": ("Merci,\n{name}", "Cordialement,\n{name}", "Bien à vous,\n{name}"),
    "es": ("Gracias,\n{name}", "Saludos,\n{name}", "Un saludo,\n{name}"),
}
# Urgency is mostly written in the customer's language, but English loanwords ("ASAP",
# "urgent") are common in European business mail, so they appear in the other languages too.
URGENT_PREFIXES: dict[str, tuple[str, ...]] = {
    "en": ("URGENT: ", "Urgent - ", "ASAP: "),
    "de": ("DRINGEND: ", "Dringend - ", "ASAP: "),
    "fr": ("URGENT : ", "Urgent - "),
    "es": ("URGENTE: ", "Urgente - "),
}
URGENT_LINES: dict[str, tuple[str, ...]] = {
    "en": (
        "This is urgent, please help asap.",
        "We have a complete outage and nobody on our team can work.",
        "We are at risk of data loss, please escalate immediately.",
        "Production is down for all our users. Urgent!",
    ),
    "de": (
        "Das ist dringend, bitte schnellstmöglich melden.",
        "Wir haben einen Totalausfall, niemand kann arbeiten.",
        "Es droht Datenverlust, bitte sofort eskalieren.",
        "Bitte ASAP melden, unsere Produktion steht.",
    ),
    "fr": (
        "C'est urgent, merci de répondre au plus vite.",
        "Panne totale chez nous, personne ne peut travailler.",
        "Risque de perte de données, merci d'escalader immédiatement.",
    ),
    "es": (
        "Es urgente, por favor respondan lo antes posible.",
        "Tenemos una caída total del servicio y nadie puede trabajar.",
        "Hay riesgo de pérdida de datos, por favor escalen de inmediato.",
    ),
}
PII_LINES: dict[str, tuple[str, ...]] = {
    "en": ("You can reach me at {email} or {phone}.", "Call me back on {phone}, please."),
    "de": ("Sie erreichen mich unter {email} oder {phone}.", "Bitte rufen Sie mich an: {phone}."),
    "fr": ("Vous pouvez me joindre à {email} ou au {phone}.", "Rappelez-moi au {phone} svp."),
    "es": ("Pueden contactarme en {email} o al {phone}.", "Llámenme al {phone}, por favor."),
}
PHONE_PREFIXES = {"en": "+1 555", "de": "+49 30", "fr": "+33 1", "es": "+34 91"}

AGENT_FIRST_REPLIES: dict[str, tuple[str, ...]] = {
    "en": (
        "Hi {name}, thanks for reaching out. I'm looking into this now.",
        "Hello {name}, I've picked up your ticket and will update you shortly.",
    ),
    "de": (
        "Hallo {name}, danke für Ihre Nachricht. Ich kümmere mich gerade darum.",
        "Guten Tag {name}, ich habe Ihr Ticket übernommen und melde mich in Kürze.",
    ),
    "fr": (
        "Bonjour {name}, merci pour votre message. Je m'en occupe.",
        "Bonjour {name}, j'ai pris en charge votre demande et reviens vers vous rapidement.",
    ),
    "es": (
        "Hola {name}, gracias por escribirnos. Ya estoy revisándolo.",
        "Hola {name}, he tomado su caso y le informaré en breve.",
    ),
}
AGENT_INFO_REQUESTS: dict[str, tuple[str, ...]] = {
    "en": ("Could you send a screenshot and the exact time this happened?",),
    "de": ("Könnten Sie einen Screenshot und den genauen Zeitpunkt schicken?",),
    "fr": ("Pourriez-vous envoyer une capture d'écran et l'heure exacte du problème ?",),
    "es": ("¿Podría enviar una captura de pantalla y la hora exacta del problema?",),
}
AGENT_SOLUTIONS: dict[str, tuple[str, ...]] = {
    "en": (
        "This is resolved on our side now. Let us know if anything else comes up.",
        "I've fixed the issue and closed the ticket. Have a great day!",
    ),
    "de": ("Das Problem ist behoben. Melden Sie sich gern, falls noch etwas ist.",),
    "fr": ("Le problème est résolu. N'hésitez pas à nous recontacter si besoin.",),
    "es": ("El problema está resuelto. Escríbanos si necesita algo más.",),
}
CUSTOMER_REPLIES: dict[str, tuple[str, ...]] = {
    "en": ("Here is the screenshot, it happened around 10:15.", "Attached the details."),
    "de": ("Anbei der Screenshot, es war gegen 10:15 Uhr.",),
    "fr": ("Voici la capture, c'était vers 10h15.",),
    "es": ("Adjunto la captura, fue hacia las 10:15.",),
}
CUSTOMER_FOLLOW_UPS: dict[str, tuple[str, ...]] = {
    "en": ("Any update on this?", "Still waiting for an answer, please check."),
    "de": ("Gibt es schon Neuigkeiten?", "Ich warte immer noch auf eine Antwort."),
    "fr": ("Avez-vous du nouveau ?", "J'attends toujours une réponse."),
    "es": ("¿Alguna novedad?", "Sigo esperando una respuesta."),
}
CUSTOMER_REOPENS: dict[str, tuple[str, ...]] = {
    "en": ("Sorry, the problem is back again.", "This is not fixed, it happened again today."),
    "de": ("Leider tritt das Problem wieder auf.",),
    "fr": ("Désolé, le problème est revenu.",),
    "es": ("Lo siento, el problema ha vuelto.",),
}

# Knowledge-base titles per language and category; bodies are assembled from the title,
# a product and a few generic steps so every article is searchable by its own vocabulary.
KB_TITLES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "billing": (
            "How to request a refund",
            "Understanding your invoice",
            "Why was I charged twice?",
            "Changing your payment method",
        ),
        "technical": (
            "Troubleshooting sync errors",
            "Fixing crashes after an update",
            "Connection timeouts: what to check",
            "Reading error codes in the log",
        ),
        "account": (
            "Resetting your password",
            "Recovering two-factor authentication",
            "Changing the email on your account",
            "Deleting your account",
        ),
        "shipping": (
            "Tracking your parcel",
            "What to do if your order is late",
            "Returning a wrong or damaged item",
            "Changing a delivery address",
        ),
        "general": (
            "Getting started guide",
            "Training and onboarding resources",
            "Support opening hours",
            "Comparing our plans",
        ),
    },
    "de": {
        "billing": ("Rückerstattung beantragen", "Ihre Rechnung verstehen"),
        "technical": ("Synchronisierungsfehler beheben", "Abstürze nach einem Update"),
        "account": ("Passwort zurücksetzen", "Zwei-Faktor-Authentifizierung wiederherstellen"),
        "shipping": ("Sendungsverfolgung", "Falsche oder beschädigte Lieferung zurücksenden"),
        "general": ("Erste Schritte", "Unsere Tarife im Vergleich"),
    },
    "fr": {
        "billing": ("Demander un remboursement", "Comprendre votre facture"),
        "technical": ("Résoudre les erreurs de synchronisation", "Plantages après une mise à jour"),
        "account": (
            "Réinitialiser votre mot de passe",
            "Récupérer l'authentification à deux facteurs",
        ),
        "shipping": ("Suivre votre colis", "Retourner un article abîmé ou erroné"),
        "general": ("Guide de démarrage", "Comparer nos offres"),
    },
    "es": {
        "billing": ("Solicitar un reembolso", "Entender su factura"),
        "technical": ("Solucionar errores de sincronización", "Cierres tras una actualización"),
        "account": ("Restablecer la contraseña", "Recuperar la verificación en dos pasos"),
        "shipping": ("Seguir su paquete", "Devolver un artículo dañado o equivocado"),
        "general": ("Guía de inicio", "Comparar nuestros planes"),
    },
}
KB_BODY: dict[str, str] = {
    "en": "{title}. This article applies to {product}. 1. Open Settings. 2. Follow the steps "
    "for {title_lower}. 3. If the problem persists, contact support with your reference.",
    "de": "{title}. Dieser Artikel gilt für {product}. 1. Einstellungen öffnen. 2. Den Schritten "
    "folgen. 3. Besteht das Problem weiter, kontaktieren Sie den Support.",
    "fr": "{title}. Cet article concerne {product}. 1. Ouvrez les paramètres. 2. Suivez les "
    "étapes. 3. Si le problème persiste, contactez le support.",
    "es": "{title}. Este artículo se aplica a {product}. 1. Abra la configuración. 2. Siga los "
    "pasos. 3. Si el problema continúa, contacte con soporte.",
}


@dataclass(frozen=True)
class TicketText:
    """Rendered ticket text and the facts that drove it (for evaluation)."""

    subject: str
    description: str
    urgent: bool
    has_pii: bool


def _lang(table: Mapping[str, object], language: str) -> str:
    # Unknown languages fall back to English rather than failing: the config may list a
    # language the templates do not cover yet.
    return language if language in table else "en"


def _slots(rng: random.Random) -> dict[str, str]:
    error = rng.choice(ERROR_FORMATS).format(
        n4=rng.randint(1000, 9999),
        n3=rng.randint(100, 999),
        http=rng.choice(HTTP_CODES),
        hex=f"{rng.getrandbits(24):06X}",
    )
    day = rng.randint(1, 28)
    month = rng.randint(1, 12)
    return {
        "product": rng.choice(PRODUCTS),
        "plan": rng.choice(PLANS),
        "order": f"ORD-{rng.randint(100000, 999999)}",
        "invoice": f"INV-{rng.randint(2022, 2025)}-{rng.randint(10000, 99999)}",
        "amount": f"{rng.randint(5, 2500)}.{rng.randint(0, 99):02d} EUR",
        "error": error,
        "carrier": rng.choice(CARRIERS),
        "tracking": f"{rng.choice(('1Z', 'JJD', 'LP'))}{rng.randint(10**9, 10**10 - 1)}",
        "days": str(rng.randint(3, 14)),
        "version": f"{rng.randint(2, 9)}.{rng.randint(0, 12)}.{rng.randint(0, 9)}",
        "date": f"{day:02d}.{month:02d}.",
    }


def phone_number(rng: random.Random, language: str) -> str:
    """A fictional phone number formatted like the customer's country."""
    prefix = PHONE_PREFIXES.get(language, PHONE_PREFIXES["en"])
    return f"{prefix} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"


def render_ticket(
    rng: random.Random,
    *,
    category: str,
    language: str,
    customer_name: str,
    customer_email: str,
    urgent: bool,
    pii: bool,
) -> TicketText:
    """Render a ticket subject and description for a category in the customer's language.

    Args:
        rng: Seeded generator; the same state always renders the same text.
        category: The ticket's true category; unknown categories use the general templates.
        language: The customer's language; unknown languages use English.
        customer_name: Used in the sign-off.
        customer_email: Quoted when ``pii`` asks for contact details in the text.
        urgent: Add urgency words (subject prefix and/or an urgency sentence).
        pii: Add an e-mail address and/or phone number to the description.
    """
    lang = _lang(SUBJECTS, language)
    by_cat = SUBJECTS[lang]
    cat = category if category in by_cat else "general"
    slots = _slots(rng)
    subject = rng.choice(by_cat[cat]).format(**slots)
    parts = [rng.choice(GREETINGS[lang])]
    body = rng.choice(BODIES[lang][cat]).format(**slots)
    if urgent:
        # Half of the urgent tickets shout in the subject, all of them say it in the text.
        if rng.random() < 0.5:
            subject = rng.choice(URGENT_PREFIXES[lang]) + subject
        line = rng.choice(URGENT_LINES[lang])
        body = f"{line} {body}" if rng.random() < 0.5 else f"{body} {line}"
    parts.append(body)
    if pii:
        parts.append(
            rng.choice(PII_LINES[lang]).format(email=customer_email, phone=phone_number(rng, lang))
        )
    parts.append(rng.choice(SIGN_OFFS[lang]).format(name=customer_name))
    description = "\n\n".join(p for p in parts if p)
    return TicketText(subject=subject, description=description, urgent=urgent, has_pii=pii)


def render_reply(
    rng: random.Random, table: dict[str, tuple[str, ...]], language: str, **kw: str
) -> str:
    """Render one of the reply tables (agent replies, customer replies) in a language."""
    return rng.choice(table[_lang(table, language)]).format(**kw)


def render_kb_articles(
    rng: random.Random, categories: list[str], languages: list[str]
) -> list[tuple[str, str, str, str]]:
    """Knowledge-base articles as ``(title, body, category, language)`` tuples.

    Categories without templates get no articles: a KB only documents what it knows.
    """
    articles: list[tuple[str, str, str, str]] = []
    for language in languages:
        titles = KB_TITLES.get(language)
        if titles is None:
            continue
        for category in categories:
            for title in titles.get(category, ()):
                body = KB_BODY[language].format(
                    title=title, title_lower=title.lower(), product=rng.choice(PRODUCTS)
                )
                articles.append((title, body, category, language))
    return articles
