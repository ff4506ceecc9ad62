package com.yahoo.document.restapi.resource;

import com.yahoo.restapi.Path;

import java.net.URI;

/**
 * Which document a /document/v1 request path addresses, decided by Vespa's own code: the parsing that
 * DocumentV1ApiHandler does (Path.withoutValidation on the request URI, then DocumentPath on it and its raw
 * path). DocumentPath is package-private, so this class sits in the handler's package.
 */
public class VespaDocumentPaths {

    static final String DOCUMENT = "/document/v1/{namespace}/{documentType}/docid/{*}";

    /** The document id the handler builds for a raw request path, e.g. "id:doc:doc::a/c". */
    public static String documentId(String rawPath) {
        URI uri = URI.create("http://localhost:8080" + rawPath);
        Path path = Path.withoutValidation(uri);
        if ( ! path.matches(DOCUMENT))
            throw new IllegalArgumentException("not a single-document path: " + rawPath);
        return new DocumentPath(path, uri.getRawPath()).id().toString();
    }

}
