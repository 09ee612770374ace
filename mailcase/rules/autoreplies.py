"""Is this mail an automatic reply?  Headers, subject and body judged together.

An auto-reply (an out-of-office or vacation notice, another help desk's "we
received your request") is never a request, whoever sends it: answering it
is how mail loops start.  Many carry no RFC 3834 header at all -- an Outlook
client rule, an Apple Mail rule, a Notes agent, a help desk that does not
set ``Auto-Submitted`` -- so the subject and the newest part of the text are
read too, in the languages our customers write: English, German, French,
Spanish, Italian, Dutch and Portuguese.

Each signal is a *kind* of evidence: "I am away", "until the 4th", "limited
access to e-mail", "for urgent matters contact", "I will reply when I am
back", an OOF subject, an auto-reply header.  A person writing about an
absence ("I was out of office last week and now the export fails") gives one
kind, rarely more, and asks something; an auto-reply gives three or more and
asks nothing.  :func:`judge` returns the kinds found, and whether they add
up, with the reasons to record.

Machine mail that is not a reply (a monitoring alert, a scanner, a job
report) is recognised here too (:func:`machine_mail`): from a
representative it is still a request, but never answered automatically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailcase.mail.subjects import is_forward
from mailcase.rules.base import Mail
from mailcase.rules.prefilter import Phrases

#: how much of the newest text is read: an auto-reply says what it is at the top
_HEAD = 1200
_F = re.IGNORECASE | re.UNICODE


def _any(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), _F)


def _phrases(*patterns: str) -> Phrases:
    """As :func:`_any`, prefiltered by the words each phrase needs (prefilter.py), with the
    same answers: for the lists searched in every mail's text whose phrases all need a
    word most mail lacks (a list with a phrase needing only "at" or "will" gains nothing)."""
    return Phrases(patterns, _F)


# -- the subject ----------------------------------------------------------------------------

#: an out-of-office or auto-reply subject, at its very start: a reply to one
#: ("RE: Automatic reply: ...") or a forward of one is a person writing
OOO_SUBJECT = _any(
    r"^\s*(?:automatic|auto)[\s-]*(?:reply|response|antwort|answer)\b",
    r"^\s*auto[\s-]?(?:reply|respon[sd]e?r?)\b", r"^\s*autoreply\b", r"^\s*autosvar\b",
    r"^\s*out\s+of\s+(?:the\s+)?office\b(?!\s+(?:supplies|furniture|equipment|printer|party))", r"^\s*ooo\b",
    r"\bis\s+out\s+of\s+(?:the\s+)?office\b", r"\b(?:ist|bin)\s+au(?:ß|ss)er\s+haus\b",
    r"^\s*abwesenheit(?:snotiz|smeldung)\b", r"^\s*automatische\s+antwort\b",
    r"^\s*(?:ich\s+bin\s+)?nicht\s+im\s+b(?:ü|ue)ro\b",
    r"^\s*r(?:é|e)ponse\s+automatique\b", r"^\s*absence\s+du\s+bureau\b",
    r"^\s*respuesta\s+autom(?:á|a)tica\b", r"^\s*fuera\s+de\s+(?:la\s+)?oficina\b",
    r"^\s*risposta\s+automatica\b", r"^\s*fuori\s+(?:ufficio|sede)\b",
    r"^\s*automatisch\s+antwoord\b", r"^\s*buiten\s+kantoor\b",
    r"^\s*resposta\s+autom(?:á|a)tica\b", r"^\s*fora\s+do\s+escrit(?:ó|o)rio\b",
)
#: one word of absence ("Vacation", "Urlaub", "Absent until 2 Dec"): an auto-reply's
#: subject only when that is nearly all it says, or it says until when
OOO_WORD_SUBJECT = re.compile(
    r"^\s*(?:on\s+)?(?:vacation|holiday|holidays|annual\s+leave|away|absent|absence|abwesend|abwesenheit|urlaub"
    r"|absente?|en\s+cong(?:é|e)s?|ausente|de\s+vacaciones|assente|in\s+ferie|afwezig(?:heid)?|(?:met\s+)?vakantie"
    r"|(?:de|em)\s+f(?:é|e)rias)\b\s*(?:$|[:\-–—!.]|(?:until|till|bis|jusqu|hasta|fino|tot|at(?:é|e))\b"
    r"|\S+\s*$|from\s+the\s+\w+\s*$)", _F)

#: another help desk's receipt: its ticket number or its "received" in the subject
RECEIPT_SUBJECT = _any(
    r"^\s*(?:\[[^\]]{0,40}\]\s*)?(?:ticket|request|case|inquiry|enquiry)\s+(?:received|created|opened|logged)\b",
    r"^\s*(?:we(?:'ve| have)\s+)?received\s*:?\s*(?:your\s+(?:request|message|e-?mail))?",
    r"^\s*(?:your\s+)?(?:request|ticket|case)\s+(?:has\s+been|was)\s+(?:received|created|opened|logged)\b",
    r"^\s*support\s+ticket\s+opened\b", r"^\s*new\s+ticket\b", r"^\s*thank(?:s| you)\s+for\s+(?:your\s+(?:e-?mail|message)|contacting)\b",
    r"^\s*\[?ticket\s*#\s*[\w-]*\d{3,}\]?", r"^\s*\[#[A-Z0-9]{2,}-\d+-\d+\]", r"\bref:_[\w.]+:ref\b",
    r"^\s*case\s+\d{5,}\s*:", r"\bincident\s+INC\d{5,}\b", r"^\s*\[?(?:SR|REQ|RITM)\d{5,}\]?",
    r"^\s*(?:ticket|demande|anfrage|solicitud|richiesta|aanvraag|pedido|chamado)\s+"
    r"(?:re(?:ç|c)ue?|erhalten|eingegangen|recibid[oa]|ricevut[oa]|ontvangen|recebid[oa]|cr(?:éé|ee)e?|creado|aperto)\b",
    r"^\s*(?:\[[^\]]{0,40}\]\s*)?(?:nouveau|neues|nuevo|nuovo|nieuw|novo)\s+(?:ticket|chamado)\b",
    r"^\s*\[(?:demande|request|ticket|anfrage|solicitud|richiesta|aanvraag|pedido)\s+"
    r"(?:re(?:ç|c)ue|received|erhalten|recibida|ricevuta|ontvangen|recebido)\]",
    r"\[ticket\s*#\s*\d{3,}\]", r"^\s*(?:bedankt|dank)\s+voor\s+uw\s+(?:aanvraag|bericht|e-?mail)\b",
    r"^\s*(?:vielen\s+dank|danke)\s+f(?:ü|ue)r\s+ihre\s+(?:anfrage|nachricht)\b",
    r"^\s*merci\s+pour\s+votre\s+(?:demande|message)\b", r"^\s*gracias\s+por\s+su\s+(?:solicitud|mensaje|consulta)\b",
    r"^\s*grazie\s+per\s+(?:la\s+sua|il\s+suo)\s+(?:richiesta|messaggio)\b",
    r"^\s*obrigad[oa]\s+pel[oa]\s+(?:sua|seu)\s+(?:pedido|mensagem|contacto|contato)\b",
    r"^\s*ihre\s+(?:anfrage|nachricht)\b", r"^\s*votre\s+demande\b", r"^\s*su\s+solicitud\b",
)


# -- the body: kinds of out-of-office evidence ------------------------------------------------

OOO_KINDS: dict[str, re.Pattern[str] | Phrases] = {
    # I am away / on leave / not in the office
    "away": _any(
        r"\b(?:i\s*(?:'m|am)|i\s+will\s+be|i'll\s+be|i\s+shall\s+be|currently|presently)\s+(?:\w+\s+){0,2}?"
        r"(?:out\s+of\s+(?:the\s+)?office|away|on\s+(?:\w+\s+)?leave|on\s+(?:vacation|holiday|holidays)"
        r"|not\s+in\s+the\s+office|out\s+of\s+town|travell?ing|at\s+a\s+conference|off\s+work|unavailable)",
        r"\bout\s+of\s+(?:the\s+)?office\s+(?:until|till|through|from)\b", r"\bi\s+am\s+away\s+from\b",
        # a shared or assistant-set responder speaks of the person in the third person
        r"\b(?:is|are)\s+(?:currently\s+)?(?:out\s+of\s+(?:the\s+)?office|away\s+from|on\s+(?:\w+\s+)?leave"
        r"|on\s+(?:vacation|holiday)|not\s+in\s+the\s+office)\b",
        # the practice or office as a whole is closed
        r"\b(?:our|the)\s+(?:office|practice|clinic|surgery|lab|laboratory)\s+(?:is|will\s+be)\s+closed\b",
        r"\b(?:praxis|b(?:ü|ue)ro|kanzlei|labor|ordination)\s+(?:ist|bleibt)\b.{0,60}?\bgeschlossen\b",
        r"\b(?:cabinet|bureau|secr(?:é|e)tariat|laboratoire)\s+(?:est|sera)\s+ferm(?:é|e)\b",
        r"\b(?:consulta|cl(?:í|i)nica|oficina)\s+(?:est(?:á|a)|estar(?:á|a)|permanecer(?:á|a))\s+cerrad[oa]\b",
        r"\b(?:studio|ambulatorio|ufficio)\s+(?:è|e|sar(?:à|a)|rimarr(?:à|a))\s+chius[oa]\b",
        r"\b(?:praktijk|kantoor)\s+(?:is|blijft)\b.{0,40}?\bgesloten\b",
        r"\b(?:consult(?:ó|o)rio|cl(?:í|i)nica|escrit(?:ó|o)rio)\s+(?:est(?:á|a)|estar(?:á|a))\s+fechad[oa]\b",
        r"\b(?:bin|befinde\s+mich|sind)\b.{0,60}?\b(?:nicht\s+im\s+b(?:ü|ue)ro|abwesend|im\s+urlaub|au(?:ß|ss)er\s+haus"
        r"|nicht\s+erreichbar|in\s+elternzeit|auf\s+(?:einer\s+)?(?:dienstreise|fortbildung|schulung))",
        r"\b(?:je\s+suis|nous\s+sommes)\b.{0,40}?\b(?:absente?s?|en\s+cong(?:é|e)s?|en\s+vacances|en\s+formation"
        r"|en\s+d(?:é|e)placement|hors\s+du\s+bureau|indisponible)",
        r"\b(?:estoy|estar(?:é|e)|me\s+encuentro)\b.{0,40}?\b(?:fuera\s+de\s+(?:la\s+)?oficina|ausente|de\s+vacaciones"
        r"|de\s+viaje|de\s+baja|de\s+permiso)",
        r"\b(?:sono|sar(?:ò|o))\b.{0,40}?\b(?:fuori\s+(?:ufficio|sede)|assente|in\s+ferie|in\s+vacanza|in\s+trasferta)",
        r"\b(?:ik\s+ben|ben\s+ik|ik\s+zal)\b.{0,40}?\b(?:afwezig|buiten\s+kantoor|met\s+vakantie|niet\s+op\s+kantoor"
        r"|met\s+verlof|niet\s+bereikbaar)",
        r"\b(?:estou|estarei|encontro-me)\b.{0,40}?\b(?:fora\s+do\s+escrit(?:ó|o)rio|ausente|de\s+f(?:é|e)rias"
        r"|em\s+f(?:é|e)rias|de\s+licen(?:ç|c)a|em\s+viagem)",
    ),
    # until a date / back on a day
    "until": _any(
        r"\b(?:until|till|through|thru)\s+(?:and\s+including\s+)?(?:\w+day,?\s+)?"
        r"(?:\d{1,2}(?:st|nd|rd|th)?\s+\w+|\d{1,2}[./-]\d{1,2}|[A-Z][a-z]+\s+\d{1,2}\b|next\s+\w+|\w+day\b)",
        r"\b(?:back|return(?:ing)?)\s+(?:in\s+the\s+office\s+)?(?:on|by)\s+\w+", r"\breturn\s+date\b",
        r"\bbis\s+(?:einschlie(?:ß|ss)lich|zum|am|voraussichtlich)?\s*\d{1,2}\.\s*(?:\d{1,2}\.|[A-Z])",
        r"\bbis\s+(?:einschlie(?:ß|ss)lich|voraussichtlich)\b", r"\bab\s+(?:dem\s+)?\d{1,2}\..{0,30}\bwieder\b",
        r"\bwieder\s+(?:im\s+b(?:ü|ue)ro|erreichbar|da)\b",
        r"\bjusqu'(?:au|à)\b", r"\bde\s+retour\s+(?:le|au|à|lundi|mardi|mercredi|jeudi|vendredi)\b",
        r"\bhasta\s+el\b", r"\b(?:regresar(?:é|e)|volver(?:é|e)|estar(?:é|e)\s+de\s+vuelta)\b",
        r"\bfino\s+al\b", r"\b(?:rientrer(?:ò|o)|sar(?:ò|o)\s+di\s+ritorno|torner(?:ò|o))\b",
        r"\btot\s+en\s+met\b", r"\b(?:terug\s+op|ben\s+(?:ik\s+)?weer)\b",
        r"\bat(?:é|e)\s+(?:ao|à|o|a|dia)?\s*\d", r"\b(?:regressarei|retornarei|estarei\s+de\s+volta|volto\s+(?:no|na|a))\b",
    ),
    # limited or no access to e-mail
    "no-mail": _phrases(
        r"\b(?:limited|no|restricted|intermittent)\s+access\s+to\s+(?:my\s+)?e-?mails?\b",
        r"\bcheck(?:ing)?\s+(?:my\s+)?e-?mails?\s+(?:only\s+)?(?:intermittently|occasionally|periodically|sporadically)",
        r"\bwill\s+not\s+be\s+(?:reading|checking|monitoring)\s+(?:my\s+)?(?:e-?)?mails?\b",
        r"\bnot\s+(?:be\s+)?(?:reading|checking)\s+(?:my\s+)?(?:e-?)?mails?\s+(?:for|until|while)\b",
        r"\b(?:is|am|are)\s+not\s+(?:reading|checking)\s+(?:my\s+|her\s+|his\s+|their\s+)?(?:e-?)?mails?\b",
        r"\bkeinen?\s+(?:zugriff|zugang)\s+auf\s+(?:meine\s+)?e-?mails?\b",
        r"\be-?mails?\s+(?:nur\s+)?(?:eingeschr(?:ä|ae)nkt|sporadisch|unregelm(?:ä|ae)(?:ß|ss)ig)\b",
        r"\bne\s+consulte(?:rai)?\s+pas\s+(?:mes\s+)?(?:e-?mails|courriels|messages)\b", r"\bacc(?:è|e)s\s+limit(?:é|e)\b",
        r"\bacceso\s+limitado\b", r"\bno\s+(?:revisar(?:é|e)|tendr(?:é|e)\s+acceso)\b",
        r"\baccesso\s+limitato\b", r"\bnon\s+potr(?:ò|o)\s+(?:leggere|consultare)\b",
        r"\bbeperkte?\s+toegang\b", r"\bgeen\s+toegang\s+tot\s+(?:mijn\s+)?e-?mail\b", r"\bniet\s+gelezen\b",
        r"\bacesso\s+limitado\b", r"\bn(?:ã|a)o\s+(?:terei\s+acesso|estarei\s+a\s+ler|vou\s+ler)\b",
    ),
    # for urgent matters contact someone else
    "urgent": _phrases(
        r"\b(?:for|in)\s+(?:urgent|pressing)\s+(?:matters|issues|cases|requests)\b",
        r"\bif\s+(?:it\s+is|it's|this\s+is|your\s+(?:matter|request|message)\s+is)\s+urgent\b",
        r"\bin\s+my\s+absence\b", r"\bplease\s+contact\s+my\s+colleague\b",
        r"\bin\s+dringenden\s+f(?:ä|ae)llen\b", r"\bw(?:ä|ae)hrend\s+(?:meiner|unserer)\s+abwesenheit\b",
        r"\bvertretung\s*:", r"\bvertreten\s+(?:wird|werden)\b",
        r"\bbei\s+dringenden\s+(?:anliegen|fragen)\b",
        r"\ben\s+cas\s+d'urgence\b", r"\bpour\s+toute\s+(?:urgence|question\s+urgente)\b", r"\ben\s+mon\s+absence\b",
        r"\ben\s+caso\s+de\s+urgencia\b", r"\bpara\s+(?:asuntos|temas)\s+urgentes\b", r"\ben\s+mi\s+ausencia\b",
        r"\bper\s+(?:urgenze|questioni\s+urgenti)\b", r"\bin\s+caso\s+di\s+urgenza\b", r"\bdurante\s+la\s+mia\s+assenza\b",
        r"\bvoor\s+dringende\s+(?:zaken|vragen)\b", r"\bin\s+dringende\s+gevallen\b", r"\btijdens\s+mijn\s+afwezigheid\b",
        r"\bem\s+caso\s+de\s+urg(?:ê|e)ncia\b", r"\bpara\s+assuntos\s+urgentes\b",
        r"\bdurante\s+a\s+minha\s+aus(?:ê|e)ncia\b",
    ),
    # I will answer when I am back
    "later": _any(
        r"\b(?:i\s*(?:'ll|\s+will|\s+shall)|will)\s+(?:\w+\s+){0,2}?(?:reply|respond|get\s+back|answer|attend|deal)\b"
        r".{0,60}?\b(?:return|back|possible|soon\s+as)\b",
        r"\b(?:upon|on|after)\s+(?:my|her|his|our|their)\s+return\b",
        r"\bwhen\s+i\s*(?:return|get\s+back|am\s+back|'m\s+back)\b",
        r"\bnach\s+(?:meiner|unserer)\s+r(?:ü|ue)ckkehr\b", r"\b(?:kann|werde)\s+ihre\s+(?:nachricht|e-?mail|anfrage)\s+erst\b",
        r"\b(?:melde|k(?:ü|ue)mmere)\s+mich\b.{0,40}\b(?:so\s+bald|sobald|nach|wieder)\b",
        r"\bje\s+vous\s+(?:r(?:é|e)pondrai|recontacterai)\b", r"\b(?:d(?:è|e)s|(?:à|a))\s+mon\s+retour\b",
        r"\ble\s+responder(?:é|e)\b", r"\ba\s+mi\s+regreso\b", r"\bresponder(?:é|e)\b",
        r"\b(?:le|vi)\s+risponder(?:ò|o)\b", r"\bal\s+mio\s+rientro\b",
        r"\b(?:ik\s+)?(?:beantwoord|reageer)\s+(?:ik\s+)?(?:uw|je)\b", r"\bna\s+mijn\s+terugkeer\b",
        r"\bzal\s+(?:ik\s+)?uw\s+(?:bericht|e-?mail)\b",
        r"\bresponderei\b", r"\b(?:no|ao)\s+meu\s+regresso\b", r"\bquando\s+(?:eu\s+)?(?:voltar|regressar|retornar)\b",
    ),
}

#: kinds of evidence that the mail is another help desk's receipt
RECEIPT_KINDS: dict[str, re.Pattern[str] | Phrases] = {
    "received": _phrases(
        r"\bwe(?:'ve|\s+have)\s+(?:successfully\s+)?received\s+your\s+(?:request|message|e-?mail|inquiry|enquiry|ticket)",
        r"\b(?:a\s+)?new\s+(?:ticket|case|request)\s+(?:has\s+been|was)\s+(?:created|opened|logged)\b",
        r"\byour\s+(?:request|message|e-?mail|ticket|case|inquiry|enquiry|incident)\s+(?:\S+\s+){0,4}?(?:has\s+been|was|is\s+now)"
        r"\s+(?:received|created|logged|opened|registered|recorded)\b",
        r"\bthank(?:s|\s+you)\s+for\s+(?:contacting|reaching\s+out|getting\s+in\s+touch)\b",
        r"\b(?:this|your)\s+(?:e-?mail|message)\s+(?:has\s+been|was)\s+received\b",
        r"\b(?:wir\s+haben|haben\s+wir)\s+ihre\s+(?:anfrage|nachricht|e-?mail|mail)\s+(?:\w+\s+)?erhalten\b",
        r"\bihre\s+(?:anfrage|nachricht|e-?mail)\s+(?:\S+\s+){0,3}?(?:ist|wurde)\s+(?:bei\s+uns\s+)?"
        r"(?:eingegangen|erfasst|registriert|erhalten|angelegt|erstellt)",
        r"\bnous\s+avons\s+(?:bien\s+)?re(?:ç|c)u\s+votre\s+(?:demande|message|e-?mail|courriel)",
        r"\bvotre\s+(?:demande|ticket)\s+(?:\S+\s+){0,3}?a\s+(?:bien\s+)?(?:é|e)t(?:é|e)\s+"
        r"(?:re(?:ç|c)ue?|cr(?:éé|ee)e?|enregistr(?:é|e)e?|ouverte?)",
        r"\bhemos\s+recibido\s+su\s+(?:solicitud|mensaje|correo|consulta|petici(?:ó|o)n)",
        r"\bsu\s+(?:solicitud|ticket|consulta)\s+(?:\S+\s+){0,3}?(?:ha\s+sido|fue)\s+(?:recibid[oa]|cread[oa]|registrad[oa])",
        r"\babbiamo\s+ricevuto\s+(?:la\s+sua|il\s+suo|la\s+tua|il\s+tuo)\s+(?:richiesta|messaggio|e-?mail)",
        r"\b(?:la\s+sua\s+richiesta|il\s+suo\s+ticket)\s+(?:\S+\s+){0,3}?(?:è|e)\s+stat[oa]\s+"
        r"(?:ricevut[oa]|creat[oa]|apert[oa]|registrat[oa])",
        r"\b(?:wij|we)\s+hebben\s+uw\s+(?:aanvraag|bericht|e-?mail|verzoek|vraag)\s+(?:\w+\s+){0,4}?ontvangen\b",
        r"\buw\s+(?:aanvraag|ticket|verzoek)\s+(?:\S+\s+){0,3}?(?:is|werd)\s+(?:aangemaakt|ontvangen|geregistreerd)",
        r"\brecebemos\s+(?:a\s+sua|o\s+seu|sua|seu)\s+(?:solicita(?:ç|c)(?:ã|a)o|pedido|mensagem|e-?mail|contacto|contato)",
        r"\b(?:o\s+seu|seu)\s+(?:ticket|chamado|pedido)\s+(?:\S+\s+){0,3}?foi\s+(?:criado|recebido|aberto|registrado)",
    ),
    "reference": _any(
        r"\b(?:ticket|case|request|reference|incident|anfrage|vorgangs?|dossier|caso|chamado|pratica)"
        r"[\s-]*(?:number|no\.?|nr\.?|id|#|nummer|num(?:é|e)ro|n(?:ú|u)mero|numero)\s*[:#]?\s*[#\w-]*\d{3,}",
        r"\[(?:[A-Za-z]+\s*)?#\s*[\w-]*\d{3,}\]", r"\bref:_[\w.]+:ref\b", r"\bINC\d{5,}\b",
        r"\bticket\s*#\s*\d{3,}\b",
        r"\b(?:ticket|case|request)\s+#?[A-Z]{0,5}-?\d{4,}\b",
    ),
    "automated": _phrases(
        r"\bthis\s+(?:is\s+an?\s+)?(?:e-?mail|message|reply|response)?\s*(?:is\s+|was\s+)?(?:an?\s+)?automat(?:ed|ic|ically)"
        r"(?:ally)?(?:\s+generated)?\s+(?:\w+\s+)?(?:response|reply|message|notification|acknowledge?ment|e-?mail|notice)",
        r"\bautomat(?:ed|ic)\s+(?:response|reply|acknowledge?ment|confirmation)\b",
        r"\b(?:please\s+)?do\s+not\s+reply\s+(?:directly\s+)?to\s+this\b", r"\bthis\s+mailbox\s+is\s+not\s+monitored\b",
        # the reply line help desks put on top of every mail
        r"##-\s*(?:please\s+type\s+your\s+reply|veuillez\s+(?:é|e)crire\s+votre\s+r(?:é|e)ponse|bitte\s+geben\s+sie"
        r"|escriba\s+su\s+respuesta|scrivere\s+la\s+risposta|typ\s+uw\s+antwoord|digite\s+sua\s+resposta)",
        r"\b(?:reply|write|type)\s+above\s+this\s+line\b",
        r"\bautomatisch\s+(?:generierte|erstellte|versendete|versandte)\b", r"\bbitte\s+antworten\s+sie\s+nicht\b",
        r"\bmessage\s+(?:g(?:é|e)n(?:é|e)r(?:é|e)\s+)?automatique(?:ment)?\b", r"\bmerci\s+de\s+ne\s+pas\s+r(?:é|e)pondre\b",
        r"\b(?:mensaje|respuesta|correo)\s+autom(?:á|a)tic[oa]\b", r"\bno\s+responda\b",
        r"\b(?:messaggio|risposta|e-?mail)\s+(?:generat[oa]\s+)?automatic[oa]\b", r"\bnon\s+rispondere\b",
        r"\bautomatisch\s+(?:gegenereerd|verzonden|verstuurd|antwoord|bericht)\b", r"\b(?:niet\s+beantwoorden|reageer\s+niet)\b",
        r"\b(?:mensagem|resposta|e-?mail)\s+autom(?:á|a)tic[oa]\b", r"\bn(?:ã|a)o\s+responda\b",
    ),
    "we-will": _any(
        r"\b(?:an?\s+(?:agent|member\s+of\s+(?:our|the)\s+(?:\w+\s+)?team|technician|representative)|our\s+(?:\w+\s+)?team"
        r"|(?:one\s+of\s+)?our\s+(?:agents|staff)|someone|we)\s+will\s+(?:\w+\s+){0,2}?(?:get\s+back|respond|reply"
        r"|contact|be\s+in\s+touch|review|look\s+into)",
        r"\b(?:within|in)\s+(?:the\s+next\s+)?(?:\d+|one|two|three|four|five|24|48)\s+(?:business\s+|working\s+)?(?:hours?|days?)\b",
        r"\b(?:binnen|innerhalb\s+von|dans\s+les|en\s+un\s+plazo\s+de|entro|no\s+prazo\s+de)\s+(?:\d+|\w+)\s+"
        r"(?:werkdagen|werktagen|arbeitstagen|jours\s+ouvr(?:é|e)s|d(?:í|i)as\s+h(?:á|a)biles|giorni\s+lavorativi|dias\s+(?:(?:ú|u)teis|(?:ú|u)tiles))\b",
        r"\bwir\s+(?:werden|melden)\s+(?:uns|ihre)\b", r"\bnous\s+(?:reviendrons|vous\s+r(?:é|e)pondrons|traiterons)\b",
        r"\b(?:nos\s+pondremos|le\s+responderemos|responderemos)\b", r"\b(?:la\s+contatteremo|le\s+risponderemo|risponderemo)\b",
        r"\b(?:wij|we)\s+(?:nemen|zullen)\b.{0,40}\b(?:contact|reageren|beantwoorden)\b",
        r"\b(?:entraremos\s+em\s+contato|responderemos)\b",
    ),
}

#: a mail client's read or delivery notice sent as plain text (Outlook and
#: Exchange do this inside an organisation; RFC 8098 reports are bounce.py's)
READ_NOTICE_SUBJECT = re.compile(
    r"^\s*(?:not\s+read|read|delivered|gelesen|ungelesen|nicht\s+gelesen|zugestellt|lu|non\s+lu|remis|le(?:í|i)do"
    r"|no\s+le(?:í|i)do|entregado|letto|non\s+letto|recapitato|gelezen|niet\s+gelezen|bezorgd|lida|n(?:ã|a)o\s+lida"
    r"|entregue)\s*:", re.IGNORECASE)
READ_NOTICE = _phrases(
    r"\byour\s+message\b.{0,400}?\b(?:was|has\s+been)\s+(?:read|deleted\s+without\s+being\s+read"
    r"|delivered\s+to\s+the\s+following)",
    r"\bihre\s+nachricht\b.{0,400}?\bwurde\s+(?:am\s+.{0,90}?gelesen|ungelesen\s+gel(?:ö|oe)scht"
    r"|an\s+folgende\s+empf(?:ä|ae)nger\s+(?:\w+\s+)?(?:zugestellt|(?:ü|ue)bermittelt))",
    r"\bvotre\s+message\b.{0,400}?\ba\s+(?:(?:é|e)t(?:é|e)\s+lu|(?:é|e)t(?:é|e)\s+supprim(?:é|e)\s+sans\s+avoir"
    r"|(?:é|e)t(?:é|e)\s+remis)",
    r"\bsu\s+mensaje\b.{0,400}?\b(?:se\s+ley(?:ó|o)|fue\s+le(?:í|i)do|se\s+elimin(?:ó|o)\s+sin\s+leer"
    r"|se\s+ha\s+entregado)",
    r"\bil\s+(?:suo\s+|tuo\s+)?messaggio\b.{0,400}?\b(?:(?:è|e)\s+stato\s+(?:letto|eliminato\s+senza|recapitato))",
    r"\buw\s+bericht\b.{0,400}?\b(?:is\s+gelezen|is\s+verwijderd\s+zonder|is\s+bezorgd)",
    r"\b(?:a\s+sua|sua)\s+mensagem\b.{0,400}?\bfoi\s+(?:lida|exclu(?:í|i)da\s+sem|entregue)",
)

#: the fields of a help desk's ticket notification ("Status: New", "Opened by: ...")
_TICKET_FIELDS = re.compile(
    r"\b(?:status|statut|priority|priorit(?:é|e)|priorit(?:ä|ae)t|opened\s+by|ouvert\s+par|requester|demandeurs?"
    r"|assigned\s+to|assignment\s+group|date\s+d'ouverture|urgence|urgency|categor(?:y|ie)|cat(?:é|e)gorie"
    r"|ticket\s+(?:id|number|no)|solicitante|richiedente|aanvrager|requerente)\s*:", re.IGNORECASE)


#: machine mail that is not a reply: monitoring, scanners, job reports, cron
MACHINE_SUBJECT = _any(
    r"^\s*\**\s*(?:PROBLEM|RECOVERY|ACKNOWLEDGEMENT|FLAPPING\w*)\b.*\b(?:alert|is\s+(?:CRITICAL|WARNING|UNKNOWN|OK|DOWN|UP))\b",
    r"^\s*\[(?:FIRING|RESOLVED)(?::\d+)?\]", r"^\s*(?:\[(?:Triggered|Recovered|Warn|Alert)\]|\[Datadog\])",
    r"^\s*(?:Problem|Resolved|OK)\s*:\s*.+\b(?:on|is)\b", r"^\s*Cron\s+<[^>]+>",
    r"^\s*(?:scanned|scan)\s+(?:from|to|image|document)\b", r"^\s*(?:gescannt|gescanntes\s+dokument|scan)\b",
    r"^\s*(?:message\s+from|scan\s+data\s+from)\s+\"?[A-Z0-9_-]*(?:MFP|KM_|RICOH|XEROX|HP|CANON|BROTHER)",
    r"^\s*\[(?:Success|Warning|Failed|Error)\]\s", r"\bSQL\s*Server\s+Job\s+System\b",
    # a scheduled report names its date (a person's "monthly report as requested" does not)
    r"^\s*(?:daily|weekly|monthly|nightly|hourly)\b.{0,40}\b(?:report|summary|digest|statistics|export)\b"
    r".{0,20}\b(?:\d{4}-\d{2}-\d{2}|\d{1,2}[./]\d{1,2}[./]\d{2,4})",
    r"^\s*(?:t(?:ä|ae)glich\w*|w(?:ö|oe)chentlich\w*|monatlich\w*)\b.{0,40}\b(?:bericht|report|(?:ü|ue)bersicht)\b"
    r".{0,20}\b(?:\d{4}-\d{2}-\d{2}|\d{1,2}\.\d{1,2}\.\d{2,4})",
)
MACHINE_BODY = _phrases(
    r"\bthis\s+(?:is\s+an?\s+)?(?:automatically\s+generated|automated)\s+(?:message|notification|report|alert|e-?mail)\b",
    r"\bthis\s+(?:report|summary|message|notification)\s+(?:is|was)\s+(?:generated|sent|created)\s+automatically\b",
    r"\b(?:notification\s+type|service|host)\s*:\s*\S+.*\n.*\b(?:state|status)\s*:\s*(?:CRITICAL|WARNING|OK|DOWN|UP)\b",
    r"\bplease\s+open\s+the\s+attached\s+document\b.*\bscanned\b", r"\bscanned\s+(?:and\s+sent|by|from|on)\b.*\b(?:device|scanner|MFP|multifunction)",
    r"\b(?:job|task)\s+['\"]?[\w .-]+['\"]?\s+(?:completed|succeeded|failed|finished)\b",
)


@dataclass(frozen=True)
class Judgement:
    """What the mail showed, and whether it adds up to an auto-reply."""

    auto_reply: bool
    reasons: tuple[str, ...] = ()
    #: the kinds of evidence found (for tests and for ``message show``)
    kinds: frozenset[str] = field(default_factory=frozenset)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def _newest_head(mail: Mail) -> str:
    text = mail.reply_text or ""
    return " ".join(text[:_HEAD].split())


def body_kinds(text: str) -> tuple[list[str], list[str]]:
    """(out-of-office kinds, receipt kinds) found in ``text``."""
    ooo = [k for k, p in OOO_KINDS.items() if p.search(text)]
    receipt = [k for k, p in RECEIPT_KINDS.items() if p.search(text)]
    if len(set(m.group(0).lower() for m in _TICKET_FIELDS.finditer(text))) >= 3:
        receipt.append("ticket-fields")
    return ooo, receipt


def judge(mail: Mail, header_markers: list[str], reply_header: str | None) -> Judgement:
    """Headers, subject and newest text together.

    ``header_markers`` are the RFC 3834-style markers found (automatic.py);
    ``reply_header`` names a header that declares an auto-reply outright
    (``Auto-Submitted: auto-replied``, ``X-Autoreply``), which decides alone.
    """
    if reply_header:
        return Judgement(True, (reply_header,), frozenset({"header"}))
    subject = mail.subject or ""
    forwarded = is_forward(subject)  # a person passing something on, whatever it says after "Fwd:"
    head = _newest_head(mail)
    # a read notice quotes our mail's header fields, which the quote cutter
    # takes for a quoted mail: read it in the whole body
    whole = " ".join((mail.body or "")[:800].split())
    if not forwarded and READ_NOTICE.search(whole) and (READ_NOTICE_SUBJECT.match(subject) or len(whole) < 400):
        return Judgement(True, (f"a mail client's read or delivery notice {subject[:80]!r}",),
                         frozenset({"receipt-read"}))
    ooo, receipt = body_kinds(head)
    reasons: list[str] = []
    kinds: set[str] = set()
    strong_subject = not forwarded and bool(OOO_SUBJECT.search(subject))
    subject_ooo = strong_subject or (not forwarded and bool(OOO_WORD_SUBJECT.search(subject)))
    subject_receipt = not forwarded and bool(RECEIPT_SUBJECT.search(subject))
    if subject_ooo:
        reasons.append(f"out-of-office subject {subject[:80]!r}")
        kinds.add("subject")
    if subject_receipt:
        reasons.append(f"a help desk's receipt subject {subject[:80]!r}")
        kinds.add("receipt-subject")
    if ooo:
        reasons.append("out-of-office text (" + ", ".join(ooo) + ")")
        kinds.update(ooo)
    if receipt:
        reasons.append("a help desk's receipt text (" + ", ".join(receipt) + ")")
        kinds.update(f"receipt-{k}" for k in receipt)
    if header_markers:
        reasons.append("automatic mail: " + ", ".join(header_markers))
        kinds.add("automatic")
    # what adds up.  Text that asks for something (a question, a fault) is a
    # person's unless the evidence is strong; an auto-reply's subject or a
    # machine's header counts as one more kind of evidence.  A receipt must
    # say that our mail arrived or will be answered, not only that it is
    # automatic (a job report is automatic too)
    asks = _asks(head)
    extra = int(subject_ooo) + int(bool(header_markers))
    if not {"received", "we-will", "ticket-fields"} & set(receipt):
        receipt = []
    extra_receipt = int(subject_receipt) + int(bool(header_markers))
    if asks:
        # an auto-reply's subject on mail a machine declares automatic: no person asks that way
        auto = len(ooo) >= 3 or (len(ooo) >= 2 and extra > 0) or (len(receipt) >= 2 and extra_receipt > 0) or (
            len(receipt) >= 1 and subject_receipt and bool(header_markers)) or (subject_ooo and bool(header_markers))
    else:
        # one kind of text evidence with a subject or header only if it is the
        # core statement ("I am away", "no access to e-mail"), not a date range
        core = bool({"away", "no-mail"} & set(ooo))
        # an auto-reply's subject on a reply (a person's reply starts "Re:") is one
        auto = (len(ooo) >= 2 or (core and extra > 0) or (subject_ooo and bool(header_markers))
                or (strong_subject and (len(head) < 40 or bool(mail.info.in_reply_to)))
                or len(receipt) >= 2 or (len(receipt) >= 1 and extra_receipt > 0))
    return Judgement(auto, tuple(reasons), frozenset(kinds))


_ASKS = _any(
    r"\?", r"\b(?:please|pls|kindly)\s+(?:help|advise|check|fix|look|let\s+us\s+know)\b",
    r"\b(?:error|fails?|failing|crash(?:es|ed)?|broken|not\s+working|doesn't\s+work|does\s+not\s+work|cannot|can't|unable)\b",
    r"\b(?:fehler|funktioniert\s+nicht|geht\s+nicht|bitte\s+um\s+hilfe)\b", r"\b(?:erreur|ne\s+fonctionne\s+pas|impossible\s+de)\b",
    r"\b(?:no\s+funciona|no\s+puedo)\b", r"\b(?:errore|non\s+funziona|non\s+riesco)\b",
    r"\b(?:foutmelding|werkt\s+niet|lukt\s+niet)\b", r"\b(?:erro|n(?:ã|a)o\s+funciona|n(?:ã|a)o\s+consigo)\b",
    r"\b(?:stuck|blocked|hangs|h(?:ä|ae)ngt|blockiert|bloqu(?:é|e)e?s?|bloquead[oa]|bloccat[oa]|geblokkeerd|mislukt"
    r"|falha|falhar|falla|fallando|schl(?:ä|ae)gt\s+fehl)\b",
    r"\b(?:call\s+me|rappeler|rappelez|r(?:ü|ue)ckruf|ll(?:á|a)me(?:me|nos)|richiamar|bel\s+(?:me|ons)|liguem?)\b",
)


_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)


def _asks(text: str) -> bool:
    """Whether the text asks for something or reports a fault (a person writing)."""
    return bool(_ASKS.search(_URL.sub(" ", text)))


def machine_mail(mail: Mail) -> str | None:
    """Why this looks like machine mail that is not a reply (an alert, a scan, a report), or None."""
    subject = mail.subject or ""
    if is_forward(subject):
        return None
    if MACHINE_SUBJECT.search(subject):
        return f"a machine's subject {subject[:80]!r} (an alert, a scan or a report)"
    head = (mail.reply_text or "")[:_HEAD]
    if MACHINE_BODY.search(head):
        return "a machine's text (an alert, a scan or a report)"
    return None
