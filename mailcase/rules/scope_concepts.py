"""Coding, billing and payer advice, recognised by concept.

The agreement covers "functional use of the software only", not "coding,
billing, or payer-specific advice".  A mail is out of scope when it *asks for
a decision* in one of those fields: a sentence that seeks advice ("which ...
should we", "can we bill ...", "is it ok to ...", "does Medicare cover ...")
about the field's own objects (codes, modifiers and E/M levels; charges,
balances and refunds; payers, coverage, authorisations and appeals).  A mail
that reports what the software does with those objects -- an error message
naming a CPT code, a claim that fails to submit, a payer missing from a list,
how to set something up -- asks for functional help and is in scope, however
many codes it names.  When a mail does both, the advice it asks for decides.

:func:`judge` returns the category and the sentence that decided, for the
verdict's reason.  The tables below are the whole of the knowledge; they
cover English, German, French and Spanish phrasing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_F = re.IGNORECASE | re.UNICODE


def _any(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), _F)


# -- the field's objects ---------------------------------------------------------------------

CODING = _any(
    r"\b(?:cpt|hcpcs|icd[\s-]?10(?:[\s-]?(?:cm|pcs))?|icd|dx|diagnos[ie]s|e/?m|em\s+level|code[ds]?|coding|coder"
    r"|modifiers?|units?|bundled?|bundling|ncci|unlisted|add-on|level\s+[1-5]|place\s+of\s+service|pos\s+\d{2}"
    r"|root\s+operation|external\s+cause|primary\s+diagnosis|pointer)\b",
    r"\b99[2-4]\d\d\b", r"\b\d{5}\b(?=[^%$]{0,40}\b(?:with|and|or|modifier|code|units?|billed)\b)",
    r"\b[A-V]\d{4}\b", r"\b[A-TV-Z]\d{2}\.\d{1,4}[A-Z]?\b", r"\b0[0-9A-HJ-NP-Z]{6}\b",
    r"\b(?:modifier|mod)\s*-?\s*(?:\d{2}|[A-Z]{2})\b", r"\b(?:25|59|57|76|77|91|95|93|GT|XU|XS|XE|XP|26|TC|LT|RT)\s+or\s+\w+\b",
    r"\b(?:goä|goa|ebm|ziffer\w*|ccam|ngap|cotation|cotar|código|codigo|cie-?10|acte|codice|nomenclatore"
    r"|nomenclatuur|dbc|tuss|cbhpm|cid-?10|procedimento)\b",
    # modifiers written alone (upper case: "the KX", "GA or GZ")
    r"(?-i:\b(?:KX|GA|GZ|GY|GX|GP|GN|JW|JZ|XE|XS|XP|XU|LT|RT|QW|QK|TC|FA|E[1-4]|F[1-9]|T[A1-9])\b)",
    r"\b(?:add|append|use|put|attach)\s+(?:a\s+|the\s+)?-?(?:25|59|57|76|77|91|95|93|GT|XU|26|TC|KX|GA|GZ)\b",
    # the codes themselves
    r"\b(?:99[2-4]\d\d|\d{5}|[A-V]\d{4}|[A-TV-Z]\d{2}\.\d{1,4}[A-Z]?)\b",
)
BILLING = _any(
    r"\b(?:bill(?:s|ed|ing)?|charg(?:e|es|ed|ing)|fees?|price[sd]?|pricing|discount\w*|write\s*(?:it\s+|them\s+)?off"
    r"|written\s+off|refund\w*|overpa(?:id|yment\w*)|balances?|self-?pay|cash\s+patients?|uninsured|deductibles?|co-?pays?"
    r"|collect\w*|billable|chargeable"
    r"|incident[\s-]to|split[\s/-]shared|global\s+(?:period|package)|surgery\s+package|late\s+fee|no-?show"
    r"|missed\s+appointments?|estate|financial\s+(?:policy|hardship)|statements?|payment\s+plans?|ow(?:e|es|ed|ing)"
    r"|sliding\s+(?:fee|scale)|cash|hardship|too\s+(?:low|high|much|little)|waive[ds]?|waiving)\b",
    r"[$€£]\s?\d",
    r"\b(?:abrechn\w*|rechnung\w*|privatpatient\w*|facturer|factur\w+|cobrar|facturar|cobro|honorair\w*|tarif\w*"
    r"|honorar\w*|ausfallhonorar|geb(?:ü|ue)hr\w*|selbstzahler\w*|eigenanteil|franchise|d(?:é|e)passement\w*|copago"
    r"|descuento|remise|rabatt|sconto|fattur\w+|parcella|onorari\w*|contanti|ticket\s+sanitario|\w*kosten|rekenen"
    r"|in\s+rekening|korting|tarief\w*|factu\w+|eigen\s+bijdrage|desconto|cobran\w+|fatur\w+|honor(?:á|a)rios"
    r"|consulta\s+particular)\b",
)
PAYER = _any(
    r"\b(?:medicare|medicaid|aetna|cigna|humana|bcbs|blue\s+cross|blue\s+shield|anthem|united\s*healthcare|uhc|tricare"
    r"|oscar|kaiser|molina|centene|wellcare|ambetter|sunshine\s+health|noridian|novitas|palmetto|cpam|ameli|aok|bkk"
    r"|tk|barmer|dak|mac|payers?|insurers?|insurance(?:\s+compan(?:y|ies))?|plans?|carriers?)\b",
    r"\b(?:cover(?:s|ed|age)?|reimburs\w*|prior\s+auth\w*|pre-?auth\w*|\bPA\b|retro(?:active)?\s+auth\w*|authori[sz]ation|referral"
    r"|appeal\w*|redetermination|reconsideration|denial|denied|deny|credential\w*|lcd|ncd|medical(?:ly)?\s+necess\w*"
    r"|frequency|primary|secondary|contracted|in-?network|out-?of-?network|policy|reduces?\s+payment"
    r"|timely\s+filing|remark|carc|rarc)\b",
    r"\b(?:CO|PR|OA|PI|CR)-\d{1,3}\b",
    r"\b(?:kostenträger|krankenkasse|kasse|mutuelle|aseguradora|seguro|contester|recurso|mgen|verzekering\w*"
    r"|zorgverzekeraar\w*|verzekeraar|basisverzekering|aanvullende|assicurazione|convenzionat\w*|p(?:ó|o)liza"
    r"|autorizaci(?:ó|o)n|autorisation|genehmigung|conv(?:ê|e)nio|operadora|plano\s+de\s+sa(?:ú|u)de|glosa\w*"
    r"|cobertura|workers'?\s+comp\w*|bwc|abn)\b",
    # what a payer does: covers, reimburses, pays (in the customers' languages)
    r"\b(?:reimburs\w*|rembours\w*|prise?\s+en\s+charge|cubre|cubren|vergoed\w*|zahlt|bezahlt|(?:ü|ue)bernimmt"
    r"|erstatte\w*|copre|rimbors\w*)\b",
)

# -- asking for a decision ----------------------------------------------------------------------

ADVICE = _any(
    r"\b(?:can|could|may|must|shall)\s+(?:we|i)\b", r"\b(?:whether|if)\s+(?:we|i|they)\s+(?:can|may|should|must|need\s+to"
    r"|have\s+to|are\s+allowed)\b", r"\bwho(?:'s|s|\s+is|\s+should|\s+gets|\s+bills|\s+do\s+we|\s+pays)\b",
    r"\bhow\s+many\s+(?:units|times|visits|sessions|modifiers)\b", r"\bany\s+(?:problems?|issues?|risk)\s+with\b",
    r"\bis\s+there\s+a\s+way\s+to\s+(?:bill|code|charge|get\s+paid|report)\b",
    r"\b(?:is|are)\s+[^?.]{0,40}?\b(?:appropriate|allowed|correct|right|billable|covered|reimbursable|payable|required"
    r"|needed|necessary|legal|compliant)\b",
    r"\bwhat(?:'s|s|\s+is|\s+are)\s+(?:the\s+)?[\w\s'.-]{0,40}\b(?:limit|deadline|policy|policies|rule|rules|requirement"
    r"|requirements|guideline|guidelines)\b",
    r"\b(?:need|looking\s+for|want)\s+(?:a|the)\s+(?:code|cpt|icd[\s-]?10|icd|hcpcs|modifier)\b",
    r"^\s*(?:the\s+)?(?:right\s+|correct\s+)?(?:code|cpt|icd[\s-]?10|hcpcs|modifier)\s+for\b",
    r"\bor\b[^?.]{0,25}\?", r"\b(?:requires?|covers?|reimburses?|accepts?)\b",
    # deontic and permission questions, whatever follows ("should we ...", "are we allowed ...")
    r"\bshould\s+(?:we|i|they|you|she|he)\b", r"\b(?:are|am)\s+(?:we|i)\s+(?:allowed|supposed|required|able|right)\b",
    r"\bdo\s+(?:we|i)\s+need\b", r"\b(?:is|are)\s+(?:it|this|that|these|they|there\s+a\s+rule)\s+(?:required|mandatory)\b",
    r"\bcan\s+[^?.]{0,40}?\bbe\s+(?:billed|coded|used|reported|charged|appended|added|submitted|collected|waived"
    r"|written\s+off)\b", r"\b(?:billable|reimbursable|chargeable|payable)\b",
    r"\bwhen\s+(?:should|do|can|must)\s+(?:we|i)\b", r"\bhow\s+would\s+you\s+(?:code|bill|handle)\b",
    r"\bwould\s+you\s+(?:code|bill|use|recommend|suggest)\b", r"\bwhat(?:'s|s|\s+is)\s+the\s+difference\s+between\b",
    r"\bdoes\s+(?:this|that|it|the\s+\w+)\s+(?:count|qualify)\b", r"\bis\s+(?:this|that|it)\s+considered\b",
    # which / what to choose
    r"\b(?:which|what)\s+(?:one|code|codes|modifier|modifiers|diagnos\w+|icd[\s-]?10|icd|cpt|hcpcs|j-?code|level|e/?m"
    r"|place\s+of\s+service|pos|units?)\b", r"\bwhich\s+(?:one\s+)?(?:is|do|should|goes|would)\b",
    r"\bwhat\s+(?:do|should|would)\s+(?:we|i|you)\s+(?:code|bill|charge|put|use|point|argue|do)\b",
    r"\bwhat(?:'s|s|\s+is)\s+the\s+(?:right|correct|best|proper|usual|normal)\s+(?:way|code|modifier|level|fee|price|thing)\b",
    # an either/or choice: "is it 99213 or 99214?", "GT or 95?"
    r"\b(?:is|are|was)\s+(?:it|this|that|the\s+[\w/-]+(?:\s+[\w/-]+)?)\s+(?:still\s+)?\S+\s+or\s+\S+",
    r"\b\S+\s+or\s+\S+\s*\?", r"\bshould\s+(?:the|this|that|it|a|an|our|my|these|those|they)\b",
    r"\b(?:is|are)\s+(?:the|it|this|that)\s+(?:[\w/-]+[\s-]){0,3}?(?:code|modifier|level|diagnosis|dx)\b[^?]{0,30}\?",
    r"\bwhat\s+(?:should|do)\s+(?:we|i)\s+charge\b", r"\bhow\s+much\s+(?:should|do|can|could|would)\s+(?:we|i|they)\b",
    r"\bwhat(?:'s|’s|\s+is)\s+(?:a\s+|the\s+)?(?:reasonable|normal|usual|typical|customary|standard|norm)\b",
    r"\bwhat\s+percentage\b",
    # judging what was done: "were we wrong?", "that's fine, right?", "OK to do that?"
    r"\b(?:were|was|are|am)\s+(?:we|i|they|he|she)\s+(?:wrong|right|correct|ok|okay|off)\b",
    r",\s*(?:right|correct|no|yes|ok|okay|yeah)\s*\?", r"\bthat(?:'s|’s|\s+is)\s+(?:fine|ok|okay|correct|right)\b[^.]*\?",
    r"^\s*(?:is\s+(?:it|that|this)\s+)?(?:ok|okay|alright|fine|legal|allowed)\s+to\b", r"\bok(?:ay)?\s+to\s+(?:do|bill|use|code|charge)\b",
    r"\bbest\s+practice\b", r"\bwhat\s+would\s+you\s+(?:do|recommend|suggest)\b",
    r"\bwhat\s+do\s+you\s+(?:recommend|suggest|advise)\b", r"\bany\s+(?:advice|recommendations?|suggestions?)\b",
    r"\b(?:does|do|will|would)\s+[^?.]{0,40}?\bfollow\s+(?:the\s+)?(?:same\s+)?(?:\w+\s+)?(?:rules?|guidelines?|polic(?:y|ies))\b",
    r"\b(?:forbid|forbids|prohibit|prohibits|allowed\s+under)\b",
    r"\bwhat\s+do\s+(?:most|other)\s+(?:practices|offices|clinics)\b", r"\bhow\s+do\s+other\s+(?:practices|offices)\b",
    r"\bhow\s+(?:should|do|would)\s+(?:we|i|you)\s+(?:code|bill|charge|handle|report)\b",
    r"\b(?:who|which)(?:'s|\s+is)\s+right\b", r"\bwho\s+(?:do|should)\s+(?:we|i)\s+(?:refund|bill)\b",
    r"\bwho\s+gets\s+the\s+refund\b",
    # may we / must we
    r"\b(?:can|could|may|should|shall|must)\s+(?:we|i)\s+(?:\w+\s+){0,2}?(?:bill|charge|code|use|add|put|report|collect"
    r"|give|appeal|request|append|submit\s+it\s+as|write\s+(?:it\s+)?off|refund|keep|wait|ask\s+(?:the\s+)?patient)\b",
    r"\b(?:do|does)\s+(?:we|i)\s+(?:have\s+to|need\s+to|must)\s+(?:\w+\s+){0,2}?(?:bill|charge|code|add|refund|notify"
    r"|tell|report|wait|keep|adjust|use|put)\b",
    r"\bdo\s+(?:we|i)\s+(?:code|bill|put|add|point|use|charge|report|refund|append)\b",
    r"\bdo\s+(?:we|i)\s+need\s+(?:the|a|an|to)\b",
    r"\bis\s+(?:it|that|this)\s+(?:even\s+|really\s+|still\s+)?(?:ok|okay|allowed|appropriate|correct|right|legal|fine"
    r"|acceptable|worth|compliant|reasonable)\b",
    r"\bare\s+we\s+allowed\b", r"\bis\s+it\s+a\s+problem\b", r"\bor\s+is\s+(?:that|it)\s+(?:a\s+problem|bundled|included)\b",
    r"\b(?:is|are)\s+(?:it|they|that|this)\s+(?:bundled|included)\b",
    r"\bdoes\s+(?:it|this|that|the\s+\w+(?:\s+\w+)?|she|he)\s+(?:need|get|require|qualify|count|go|support)\b",
    r"\bdoes\s+(?:the\s+)?(?:second|first|other)\s+one\s+(?:get|need)\b",
    r"\bor\s+(?:just|only)\s+(?:the|bill|code)\b", r"\bor\s+both\b",
    # the payer's rules
    r"\b(?:does|do|will|would|is|are)\s+[^?.]{0,40}?\b(?:cover|pay(?:ing)?(?:\s+for)?|require|accept|allow|reimburse"
    r"|expect(?:ing)?)\b",
    r"\bhow\s+(?:often|long|many)\b.{0,60}\b(?:pay|cover|allow|take|get|visits)\b",
    r"\b(?:what(?:'s|\s+is)\s+the\s+deadline|is\s+there\s+a\s+(?:deadline|limit)|is\s+there\s+a\s+policy)\b",
    r"\bhow\s+(?:do|can)\s+we\s+(?:appeal|fight|dispute|argue|request)\b", r"\bcan\s+(?:they|\w+)\s+do\s+that\b",
    r"\bwhat\s+do\s+they\s+need\b", r"\bis\s+that\s+still\s+the\s+policy\b", r"\bwhich\s+one\s+is\s+primary\b",
    r"\bworth\s+appealing\b", r"\bcan\s+we\s+appeal\b", r"\bneed\s+to\s+be\s+notified\b",
    r"\bwhat(?:'s|\s+is)\s+the\s+best\s+way\s+to\s+handle\b",
    # German, French, Spanish
    r"\bwelche\s+(?:goä-?\s*)?(?:ziffer|ziffern|code|codes|abrechnungsziffer|diagnose|kennzeichnung)\b",
    r"\b(?:darf|dürfen|muss|müssen|soll|sollen|kann|können)\s+(?:man|ich|wir)\b",
    r"\bist\s+(?:das|es|die|der)\b.{0,40}\b(?:erlaubt|zulässig|korrekt|richtig|abrechenbar|berechnungsfähig)\b",
    r"\b(?:abrechenbar|erstattungsfähig|zulässig)\b", r"\bwas\s+(?:dürfen|können|sollen)\s+wir\b",
    r"\b(?:abgerechnet|berechnet|angesetzt|verlangt)\s+werden\b", r"\b(?:zahlt|bezahlt|(?:ü|ue)bernimmt|erstattet|verg(?:ü|ue)tet)\b",
    r"\b(?:vergoed\w*|mogen\s+we|moeten\s+we|kunnen\s+we|welke\s+(?:code|prestatie))\b",
    r"\b(?:quale\s+codice|dobbiamo|possiamo|bisogna|si\s+pu(?:ò|o)|rimborsa|copre)\b",
    r"\brembours\w*\b", r"\bprend\s+en\s+charge\b",
    r"\bwie\s+(?:rechnen|kodieren)\s+wir\b",
    r"\b(?:quel(?:le)?s?)\s+(?:code|cotation|acte|tarif|modificateur)\b", r"\b(?:doit|peut)-on\b",
    r"\best-ce\s+qu'on\s+(?:doit|peut)\b", r"\bfaut-il\b", r"\bcomment\s+(?:facturer|coter|contester)\b",
    r"\b(?:pouvons|devons)-nous\b", r"\best-ce\s+(?:que\s+)?(?:c'est\s+)?(?:rembours|pris\s+en\s+charge|factur|cumulable)",
    r"\b(?:remboursable|cumulable|facturable)\b",
    r"\bpeut-on\s+facturer\b",
    r"\b(?:a-t-on|on\s+a|avons-nous|avez-vous)\s+le\s+droit\b", r"\ble\s+droit\s+de\b",
    r"\b(?:est(?:á|a)\s+permitido|tenemos\s+derecho|se\s+permite|(?:è|e)\s+consentito|(?:é|e)\s+permitido)\b",
    r"\bqual\s+(?:o|a|é|e)\s+(?:c(?:ó|o)digo|procedimento|cid|tuss)\b", r"\bqual\s+(?:c(?:ó|o)digo|cid|tuss)\b",
    r"\b(?:posso|devemos|podemos|precisamos|cobre|cobrem)\b", r"\b(?:hoeveel|wat\s+is\s+(?:redelijk|gebruikelijk))\b",
    r"\bqu(?:é|e)\s+c(?:ó|o)digo\b", r"\b(?:podemos|puedo|debemos|debo)\b", r"\bcu(?:á|a)l\s+(?:es|ser(?:í|i)a)\b",
    r"\b(?:se\s+puede|es\s+correcto|est(?:á|a)\s+permitido|cubre|paga)\b", r"\b(?:facturable|reembolsable)\b",
    r"\bcu(?:á|a)nto\s+(?:cobrar|deber(?:í|i)amos|se\s+cobra)\b", r"\bse\s+puede\s+(?:facturar|cobrar)\b",
)

# a question about the software itself: how to do something in it, where it is, why it fails
FUNCTIONAL = _any(
    # the software's own things: a question about them is a functional one
    r"\b(?:software|system|screen|program|app|application|module|field|button|dropdown|drop-down|menu|setting"
    r"|checkbox|check\s+box|column|tab|window|dialog|option|options|wizard|toolbar"
    r"|settings|setup|template|import\w*|export\w*|print\w*|error|messages?|batch|queue|interface|upload\w*|download\w*|(?:patient|our)\s+portal|inbox|edit(?:ing|ed)?"
    r"|turn(?:ed|ing)?\s+(?:it\s+|this\s+|that\s+)?(?:on|off)|enabled?|disabled?|activated?|prove|proof\s+of"
    r"|(?:csv|txt|pdf|xml|837|835|edi|the|this|a)\s+file"
    r"|login|log\s+in|password|workstation|server|update|updates|upgrade|version|install\w*|patch|report\s+(?:shows|says)"
    r"|validator|scrubber\s+rule|code\s+set|picker|crash\w*|slow|freez\w*|stuck|greyed|grayed|sync\w*"
    r"|by\s+design|undo|un-?post|re-?post|re-?run|re-?send|reprint|job|worklist|work\s+queue|filter\w*|sort\w*"
    r"|turns?\s+(?:red|grey|gray|yellow|orange)|highlighted|disappear\w*|in\s+bulk|bulk[\s-]?\w+|at\s+once|all\s+(?:five|\d+)\s+\w+\s+schedules"
    r"|afficher|anzeigen|angezeigt|mostrar|visualizzare|weergeven|exibir|display\w*)\b",
    # the customer's own contract with us: a commercial question, not billing advice
    r"\b(?:subscription|licen[cs]es?|renewal|our\s+contract|your\s+(?:invoice|price\s+list|offer)|seats"
    r"|(?:corrected|new|credit)\s+(?:invoice|note)|accounts\s+payable|purchase\s+order)\b",
    # what the software should have done by itself
    r"\b(?:shouldn't|should|doesn't|does|didn't|won't|will|isn't)\s+(?:it|the\s+(?:system|software|claim|program))\b"
    r"[^.?]{0,60}\bautomatically\b",
    # getting the software to do something: "get the 59 to stay", "set it to generate"
    r"\bget\s+(?:the\s+|it\s+|them\s+)?[\w-]{0,20}\s*(?:\w+\s+)?to\s+(?:stay|show|appear|print|carry|populate|stick|default"
    r"|save|drop|go\s+(?:away|through))\b",
    r"\bset\s+(?:it|them|this|that)\s+(?:up\s+)?to\b", r"\bset\s+(?:different|separate|a\s+default|the\s+default)\b",
    r"\b(?:update|change|edit)\s+(?:it|them)\s+in\b", r"\bafter\s+(?:editing|saving|posting|importing|the\s+update)\b",
    # keying data in: how it goes into the software, not what it should be
    r"\b(?:enter|type|key|click|tick)\s+(?:it|them|this|that|the|in|into)\b", r"\b(?:dashes|hyphens|spaces|leading\s+zeros?)\b",
    r"\bhow\s+(?:do|can|could)\s+i\s+(?:\w+\s+){0,2}?(?:set\s+up|setup|create|add|enter|configure|change|find|print|export"
    r"|import|override|fix|get|make|turn|run|restore|undo|delete|remove|rename|attach|send|open|see|show|re-?run|reset|build)\b",
    r"\bhow\s+(?:do|can)\s+we\s+(?:\w+\s+){0,2}?(?:set\s+up|create|configure|change|find|print|export|import|override|fix"
    r"|get\s+(?:it|them|the\s+\w+)\s+(?:to|into|back)|make\s+the\s+software|stop)\b",
    r"\bwhere\s+(?:is|are|do\s+i|can\s+i|does|do\s+we)\b", r"\bis\s+there\s+a\s+(?:setting|option|report|field|button"
    r"|shortcut|workaround|fix|patch|template)\b", r"\bis\s+there\s+a\s+way\s+(?:in|to\s+(?:make|set|get|stop|change|see"
    r"|print|export|import|show|find|turn|have)\b)", r"\bcan\s+i\s+build\b", r"\bwhat\s+format\b",
    r"\bwhy\s+(?:does|is|do|are|did)\s+(?:the\s+)?(?:software|system|screen|program|report|claim|it|they|this)\b",
    r"\b(?:is|was)\s+it\s+(?:your|the)\s+(?:system|software)\b",
    r"\b(?:wie\s+(?:lege|kann|stelle)\s+ich|comment\s+(?:relancer|faire|ajouter|créer|paramétrer)|cómo\s+(?:puedo|se\s+hace|configuro))\b",
)
#: asking without a question mark: "please advise", "I need to know whether ..."
_REQUEST = re.compile(
    r"\b(?:(?:please|pls|plz|kindly)\s+(?:advise|confirm|let\s+(?:us|me)\s+know|tell\s+(?:us|me))|(?:could|can|would)\s+you\s+(?:tell|confirm"
    r"|advise|clarify|recommend)|(?:i|we)\s+(?:need|want|would\s+like)\s+to\s+know|wondering"
    r"|not\s+(?:so\s+|too\s+|really\s+|entirely\s+|quite\s+|100\s*%\s+)?sure|unsure|not\s+clear\s+(?:to\s+(?:us|me)\s+)?(?:if|whether"
    r"|which|how)|unclear\s+(?:if|whether|which)|keep\s+arguing|(?:can't|cannot|don't)\s+agree|disagree"
    r"|(?:can|could)\s+you\s+(?:ask|find\s+out|check\s+with)"
    r"|(?:i|we)\s+(?:don't|do\s+not)\s+know\s+(?:if|whether|which|how)|whether|bitte\s+um\s+(?:auskunft|rat)"
    r"|merci\s+de\s+(?:nous|me)\s+(?:dire|confirmer|indiquer)|agradecer(?:ía|ia)mos|por\s+favor\s+(?:ind(?:í|i)quen|confirmen))\b",
    _F)
_SENTENCE = re.compile(
    r"(?<![Nn]r\.)(?<![Nn]o\.)(?<!ca\.)(?<!Dr\.)(?<!vs\.)(?<!e\.g\.)(?<!i\.e\.)(?<!z\.B\.)(?<!approx\.)"
    r"(?<=[.?!])\s+")
#: what a sentence may start with before its question: a greeting, a quote mark, a list mark
_LEAD = re.compile(
    r"^(?:[\s>'\"“‘„«*-]|(?:hi|hello|hallo|hey|dear\s+\w+|bonjour|hola|ciao|ol(?:á|a)|buongiorno|guten\s+tag"
    r"|goedemorgen|goedendag|buenos\s+d(?:í|i)as|bom\s+dia)\b[^,.!?]{0,30}[,!]?\s*)+", re.IGNORECASE)
#: a bare choice between two codes or modifiers: "76 or 77.", "GT or 95"
_BARE_CHOICE = re.compile(r"^\s*(?:modifier\s+)?[\w-]{1,6}\s+or\s+[\w-]{1,6}\s*[.?!]*\s*$", re.IGNORECASE)
_QUESTION_START = re.compile(
    r"^\s*(?:[-*\d.)]+\s*)?(?:(?:and|also|but|so|ok|okay|and\s+also)\s+)?(?:which|what|whats|what's|how|who|why"
    r"|when(?=\s+(?:do|does|did|should|can|could|is|are|will|would|must|may)\b)"
    r"|where|should|can|could|may|must|do|does|did|is|are|am|will|would|shall|welche|welcher|welches|darf|dürfen|muss"
    r"|müssen|soll|sollen|kann|können|ist|sind|wie|quel|quelle|quels|doit|peut|faut|est-ce|pouvons|devons|qué|que|cuál"
    r"|cual|cuánto|cuanto|podemos|puedo|debemos|se\s+puede|moeten|mogen|kunnen|welke|possiamo|dobbiamo|quale|¿)\b", _F)


@dataclass(frozen=True)
class ScopeJudgement:
    category: str | None       # "coding", "billing", "payer", or None (in scope)
    sentence: str = ""         # the sentence that asked for the advice
    objects: tuple[str, ...] = ()


_LIST_ITEM = re.compile(r"\n(?=\s*(?:[-*•]|\d{1,2}[.)])\s)")
#: a forwarded mail's header lines and separators stand alone
_HEADER_LINE = re.compile(
    r"^[ \t>]*(?:-{2,}.*|_{5,}|(?:from|subject|sent|to|cc|date|von|an|betreff|gesendet|de|objet|envoy(?:é|e)|(?:à|a)"
    r"|asunto|enviado|para|oggetto|da|inviato|onderwerp|van|verzonden|aan|assunto)\s*:.*)$", re.IGNORECASE | re.MULTILINE)


def _sentences(text: str) -> list[str]:
    """Sentences: a hard-wrapped line joins the next, a blank line or a list item
    ends one, and so do ., ? and !."""
    text = _HEADER_LINE.sub(lambda m: f"\n\n{m.group(0)}\n\n", text)
    paragraphs = re.split(r"\n\s*\n", _LIST_ITEM.sub("\n\n", text))
    out: list[str] = []
    for paragraph in paragraphs:
        joined = " ".join(paragraph.split())
        out.extend(s.strip() for s in _SENTENCE.split(joined) if s and s.strip())
    return out


def _asks(sentence: str) -> bool:
    sentence = _LEAD.sub("", sentence)
    return sentence.rstrip().endswith("?") or bool(_QUESTION_START.match(sentence)) or bool(
        _BARE_CHOICE.match(sentence) and _CODE_TOKENS.search(sentence))


#: verbs of a payer's rules (a payer named with one of these asks about its rules)
_PAYER_RULES = re.compile(
    r"\b(?:cover\w*|pays?|paid|paying|requires?|required|accepts?|allows?|reimburs\w*|rembours\w*|expect\w*|appeal\w*"
    r"|deadline|polic(?:y|ies)|credential\w*|notif\w*|auth\w*|limits?|denied|denials?|deny|retro\w*|contest\w*"
    r"|recurso|primary|secondary|redetermination|fight|dispute|referral|self-?refer|cubre|vergoed\w*|zahlt|(?:ü|ue)bernimmt"
    r"|wants?|prior\s+auth\w*|pre-?auth\w*|needed|necessary|rules?|forbid\w*|prohibit\w*|glosa\w*|cobre\w*"
    r"|(?-i:PA\s+(?:needed|required|for|on|request\w*|number|approved|denied|expired))"
    r"|(?-i:(?:need|needs|require|requires|get|a)\s+(?:a\s+)?PA)"
    r"|erstatte\w*|copre|rimbors\w*|prise?\s+en\s+charge|timely\s+filing|frequency|medically\s+necessary)\b", _F)
#: a payer by name (generic "insurance" counts less: "our insurance contracts" may be a billing question)
_PAYER_NAMED = re.compile(
    r"\b(?:medicare|medicaid|aetna|cigna|humana|bcbs|blue\s+cross|blue\s+shield|anthem|united\s*healthcare|uhc|tricare"
    r"|oscar|kaiser|molina|centene|wellcare|ambetter|sunshine\s+health|noridian|novitas|palmetto|cpam|aok|bkk|barmer"
    r"|tk|dak|mgen|sanitas|adeslas|cz|vgz|zilveren\s+kruis|mac|tricare\s+for\s+life|humana\s+gold|unimed|amil"
    r"|bradesco\s+sa(?:ú|u)de|sulam(?:é|e)rica|hapvida|bwc|workers'?\s+comp\w*|beihilfe|pkv|gkv|mutuelle|cpam|ameli"
    r"|medicare\s+advantage|ma\s+plans?|(?:state\s+)?medicaid\s+mco)\b", _F)
_PAYER_ACTS = re.compile(r"\bcan\s+(?:they|\w+)\s+do\s+that\b|\bhow\s+(?:do|can)\s+we\s+(?:appeal|fight|dispute|argue)\b", _F)
#: a billing decision: what to charge, whom to bill, what to refund or write off
_BILLING_ASK = re.compile(
    r"\b(?:how\s+much|charge|charging|price|fee|discount|write\s*(?:it\s+)?off|refund|collect|deductible|late\s+fee"
    r"|bill\s+(?:the\s+)?(?:patient|her|him|them|estate|family|secondary|primary)|cobrar|facturer|abrechnen)\b", _F)
#: codes themselves (not only the word "code"): a question naming them is about coding
_CODE_TOKENS = re.compile(
    r"\b(?:99[2-4]\d\d|\d{5}|[A-V]\d{4}|[A-TV-Z]\d{2}\.\d{1,4}[A-Z]?|0[0-9A-HJ-NP-Z]{6})\b"
    r"|\bmodifiers?\b|\b(?:25|59|57|76|77|91|95|93|GT|XU|26|TC)\s+or\b|\bor\s+(?:25|59|57|76|77|91|95|93|GT|XU|26|TC)\b", _F)


#: the software's own output named in the sentences before a bare question
_SOFTWARE_CONTEXT = re.compile(r"\b(?:report|reports|ledger|dashboard|statement\s+run|worklist|tab)\b", _F)


#: a fault of the software reported in the sentences before a bare question
_FAULT = re.compile(
    r"\b(?:error|errors|fehler\w*|fehlermeldung|ung(?:ü|ue)ltig|invalid|erreur|errore|fout\w*|erro|crash\w*|freez\w*"
    r"|won't\s+(?:open|load|print|import|save|start)|doesn't\s+work|does\s+not\s+work|not\s+working"
    r"|funktioniert\s+nicht|geht\s+nicht|ne\s+fonctionne\s+pas|no\s+funciona|non\s+funziona|werkt\s+niet"
    r"|n(?:ã|a)o\s+funciona|fails?\s+to\s+(?:load|import|open|print|save|start|post|run)|not\s+show\w*"
    r"|(?:don't|doesn't|can't|cannot|do\s+not)\s+see|can't\s+(?:log|sign)\s+in|missing)\b", _F)


#: codes that are no medical codes: a sign-in code, an error code, a zip code
_OTHER_CODES = re.compile(
    r"\b(?:verification|authentication|security|access|error|zip|postal|pin|2fa|otp|one-time|confirmation|activation"
    r"|licen[cs]e|promo|bar|qr|source|status|response|country|area|sms|text|backup|recovery|\d+[\s-]digit)\s+codes?\b", _F)


def _objects(sentence: str) -> dict[str, list[str]]:
    sentence = _OTHER_CODES.sub(" ", sentence)
    return {name: [m.group(0) for m in pattern.finditer(sentence)]
            for name, pattern in (("coding", CODING), ("billing", BILLING), ("payer", PAYER))}


def _weigh(sentence: str, mail: str) -> dict[str, int]:
    """How much the question is about each field: its own objects, and above
    all what it asks -- whom to bill or refund (billing), which code or
    modifier (coding), what a payer covers, requires or pays (payer)."""
    hits = _objects(sentence)
    scored = {name: 2 * len(found) for name, found in hits.items()}
    if _CODE_TOKENS.search(sentence) and scored["coding"]:
        scored["coding"] += 6  # codes themselves: a coding question
    if _BILLING_ASK.search(sentence):
        scored["billing"] += 8  # what to charge, whom to bill or refund
    rules = _PAYER_RULES.search(sentence)
    if _PAYER_ACTS.search(sentence):
        scored["payer"] += 6
    elif rules and _PAYER_NAMED.search(sentence):
        scored["payer"] += 10  # a payer named with its rules in the question itself
    elif rules and _PAYER_NAMED.search(mail):
        scored["payer"] += 8  # a named payer's rules ("can we appeal that?" of Cigna's denial)
    elif rules and hits["payer"]:
        scored["payer"] += 2
    else:
        scored["payer"] = 0  # "the primary diagnosis", "our plan": no payer question
    return scored


def judge(subject: str, text: str) -> ScopeJudgement:
    """The advice a mail asks for, if any (text: the newest, unquoted part).

    A question is advice when it asks for a decision (ADVICE, or a request
    for advice), or is a plain question naming codes themselves; never when
    it is about the software.  What it is about may stand in the sentences
    just before ("... 99213 ... Which one do we go with?"), which count half.
    The field is the one the mail's advice questions weigh most.
    """
    totals: dict[str, int] = {}
    first: dict[str, tuple[str, tuple[str, ...]]] = {}
    mail = f"{subject}\n{text[:6000]}"
    sentences = _sentences(text[:6000])
    for i, sentence in enumerate([subject, *sentences]):
        if not sentence or FUNCTIONAL.search(sentence):
            continue  # how to do it in the software: functional, whatever it names
        asks = _asks(sentence) or bool(_REQUEST.search(sentence))
        if not asks:
            continue
        advice = bool(ADVICE.search(sentence) or _REQUEST.search(sentence)
                      or (_BARE_CHOICE.match(_LEAD.sub("", sentence)) and _CODE_TOKENS.search(sentence)))
        own = _objects(sentence)
        # a bare question is advice when it names codes themselves ("99214 with
        # 25 for this?") or a payer's rule ("Cigna PA for 72148?")
        if not advice and not (sum(len(v) for v in own.values()) >= 2 and _CODE_TOKENS.search(sentence)) and not (
                _PAYER_RULES.search(sentence) and (_PAYER_NAMED.search(sentence) or _PAYER_NAMED.search(mail))):
            continue
        weights = _weigh(sentence, mail)
        if advice and i > 0:
            context = " ".join(sentences[max(0, i - 3):i - 1])
            if not any(own.values()) and _SOFTWARE_CONTEXT.search(context) and not _CODE_TOKENS.search(context):
                continue  # "Which one is wrong?" of two of the software's reports
            before = " ".join(sentences[max(0, i - 4):i - 1])
            previous = sentences[i - 2] if i >= 2 else ""
            if not any(own.values()) and (_FAULT.search(before) or (
                    FUNCTIONAL.search(previous) and not _CODE_TOKENS.search(previous))):
                continue  # "What can we do?" after an error message: help with the software
            for name, found in _objects(context).items():
                if name != "payer" or _PAYER_RULES.search(sentence):
                    weights[name] += len(found)
        for category, weight in weights.items():
            if weight <= 0:
                continue
            totals[category] = totals.get(category, 0) + weight + (2 if advice else 0)
            first.setdefault(category, (sentence, tuple(own[category][:4])))
    if not totals:
        return ScopeJudgement(None)
    category = max(totals, key=lambda k: (totals[k], -["coding", "payer", "billing"].index(k)))
    sentence, objects = first[category]
    return ScopeJudgement(category, sentence[:200], objects)
