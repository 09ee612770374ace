"""Mail as bytes and text: headers, parsing, charsets, addresses, quoting, PINs, our Message-IDs."""
