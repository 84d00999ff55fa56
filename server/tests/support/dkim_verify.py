"""Verifies the DKIM signature of an email with dkimpy, for Sesame's tests.

Usage: dkim_verify.py EML_FILE SELECTOR DOMAIN PUBLIC_KEY_BASE64

The public key is served as if published at SELECTOR._domainkey.DOMAIN
(no DNS is involved). Prints "dkim: pass" and exits 0 when the signature
verifies, prints "dkim: fail" and exits 1 otherwise.
"""

import sys

import dkim


def main():
    eml, selector, domain, public_key = sys.argv[1:5]
    record = f"v=DKIM1; k=rsa; p={public_key}".encode()
    expected = f"{selector}._domainkey.{domain}.".encode()

    def dns(name, timeout=5):
        return record if name == expected else None

    with open(eml, "rb") as handle:
        message = handle.read()
    ok = dkim.verify(message, dnsfunc=dns)
    print("dkim: pass" if ok else "dkim: fail")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
