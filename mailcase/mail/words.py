"""Words that say nothing about what a mail is about.

One list, used wherever a request's content words are compared: with the
knowledge base's articles (outbound/kb.py) and with the account's resolved
cases (rules/abuse.py).  Greetings and sign-offs are in it, since they are
what two mails of one sender share most; so are the words every support mail
uses ("help", "issue", "problem").
"""

from __future__ import annotations

STOPWORDS = frozenset("""
    a able about above actually after again all already also although always am an and any anyone
    anything are as ask asked at be because been before being below between both but by can cannot
    could did do does doing done down during each even ever every everybody everyone everything few
    fine for from further get getting going good got great had has have having he her here hers him
    his how however i if in into is it its itself just keep keeps kept know let like look looked
    looks lot lots many may maybe me might more most much must my need needed needs never no nobody
    nor not nothing now of off okay on once one only or other our ours out over own perhaps really
    said same say says see seem seemed seems shall she should since so some somebody someone
    something still such sure tell than that the their them then there these they thing things think
    this those though through to told too tried try trying two unable under until up use used using
    very want wanted was way we well were what when where whether which while who whom why will with
    wondering would yet you your yours

    email fwd help issue mail problem question sent support

    advance afternoon appreciate appreciated best cheers dear evening greetings hello hi hope hoping
    kind madam morning please regards sincerely sir team thank thanks today tomorrow yesterday

    aber auch auf aus bei bitte danke das dem den der des die ein eine einem einer eines euch
    freundlichen für geehrte geehrter gruß grüße guten hallo ihr ist mit nicht noch oder schon sehr
    sie sind tag und uns viele von war wir

    avec bien bonjour cordialement dans des elles est ils les madame mais merci monsieur nous par
    pas pour que qui quoi sont sur une vous
""".split())
