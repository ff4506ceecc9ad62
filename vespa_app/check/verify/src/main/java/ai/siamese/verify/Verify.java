package ai.siamese.verify;

import ai.vespa.embedding.ColBertEmbedder;
import ai.vespa.embedding.HuggingFaceEmbedder;
import ai.vespa.language.chunker.FixedLengthChunker;
import ai.vespa.language.chunker.SentenceChunker;
import ai.vespa.modelintegration.evaluator.OnnxRuntime;
import ai.vespa.modelintegration.evaluator.config.OnnxEvaluatorConfig;
import com.yahoo.config.ModelReference;
import com.yahoo.config.model.NullConfigModelRegistry;
import com.yahoo.config.model.api.ApplicationClusterEndpoint;
import com.yahoo.config.model.api.ContainerEndpoint;
import com.yahoo.config.model.api.ValidationParameters;
import com.yahoo.config.model.application.provider.FilesApplicationPackage;
import com.yahoo.config.model.deploy.DeployState;
import com.yahoo.config.model.deploy.TestProperties;
import com.yahoo.embedding.ColBertEmbedderConfig;
import com.yahoo.embedding.huggingface.HuggingFaceEmbedderConfig;
import com.yahoo.language.process.Chunker;
import com.yahoo.language.process.Embedder;
import com.yahoo.tensor.IndexedTensor;
import com.yahoo.tensor.TensorType;
import com.yahoo.vespa.model.VespaModel;
import com.yahoo.vespa.model.application.validation.Validation;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.File;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.logging.Level;

/**
 * Runs Vespa's own code on an application package, offline:
 *   model PACKAGE                    - the config model: XML against Vespa's RelaxNG grammars, schemas, rank
 *                                      profiles, services, then Vespa's deploy-time validation.
 *   embed PACKAGE TEXTS.json OUT.json - HuggingFaceEmbedder built from the package's own embedder config,
 *                                      embedding each text in the document and the query context.
 *   paths PATHS.json OUT.json        - the document id /document/v1's handler parses from each request path
 *                                      ({"id": ...} or {"error": ...} per path).
 *   chunks IN.json OUT.json          - the indexing language's own chunkers ({"chunker": "fixed-length" or
 *                                      "sentence", "arguments": [...], "texts": [...]}) on each text.
 *   colbert PACKAGE TEXTS.json OUT.json - ColBertEmbedder built from the package's colbert component config,
 *                                      each text as a query (float) and a document (float, and int8 bits):
 *                                      a vector per token.
 *   container PACKAGE IN.json OUT.json - documents through the package's indexing statements and requests
 *                                      through the container's query stack, in-process (see Container).
 * Exit code 0: accepted; 1: rejected (Vespa's message on stderr); 2: usage.
 */
public class Verify {

    static final String EMBEDDER_CONFIG_ID = "default/component/embedder";
    static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: model PACKAGE | embed PACKAGE TEXTS.json OUT.json | paths PATHS.json OUT.json");
            System.exit(2);
        }
        if (args[0].equals("paths") && args.length == 3) {
            documentIds(Path.of(args[1]), Path.of(args[2]));
            System.exit(0);
        }
        if (args[0].equals("chunks") && args.length == 3) {
            chunks(Path.of(args[1]), Path.of(args[2]));
            System.exit(0);
        }
        File dir = new File(args[1]);
        try {
            List<String> warnings = new ArrayList<>();
            VespaModel model = buildModel(dir, warnings);
            if (args[0].equals("model")) {
                System.out.println(JSON.writeValueAsString(Map.of("accepted", true, "warnings", warnings,
                        "vespa_version", com.yahoo.component.Vtag.currentVersion.toString())));
            } else if (args[0].equals("embed") && args.length == 4) {
                embed(model, dir.toPath(), Path.of(args[2]), Path.of(args[3]));
            } else if (args[0].equals("colbert") && args.length == 4) {
                colbert(model, dir.toPath(), Path.of(args[2]), Path.of(args[3]));
            } else if (args[0].equals("container") && args.length == 4) {
                container(model, dir.toPath(), Path.of(args[2]), Path.of(args[3]));
            } else {
                System.err.println("usage: model PACKAGE | embed PACKAGE TEXTS.json OUT.json | container PACKAGE IN.json OUT.json");
                System.exit(2);
            }
        } catch (Exception | LinkageError e) {
            System.err.println("REJECTED: " + e.getClass().getName() + ": " + messages(e));
            System.exit(1);
        }
        System.exit(0);
    }

    static void documentIds(Path pathsFile, Path out) throws Exception {
        List<String> paths = JSON.readValue(pathsFile.toFile(), new TypeReference<List<String>>() {});
        List<Map<String, String>> ids = new ArrayList<>();
        for (String path : paths) {
            try {
                ids.add(Map.of("id", com.yahoo.document.restapi.resource.VespaDocumentPaths.documentId(path)));
            } catch (RuntimeException e) {
                ids.add(Map.of("error", e.getClass().getSimpleName() + ": " + messages(e)));
            }
        }
        JSON.writeValue(out.toFile(), ids);
    }

    static String messages(Throwable e) {
        StringBuilder b = new StringBuilder(String.valueOf(e.getMessage()));
        for (Throwable c = e.getCause(); c != null; c = c.getCause())
            b.append(" <- caused by ").append(c.getClass().getSimpleName()).append(": ").append(c.getMessage());
        return b.toString();
    }

    static VespaModel buildModel(File dir, List<String> warnings) throws Exception {
        boolean hosted = Boolean.getBoolean("hosted");  // -Dhosted=true: check as Vespa Cloud would
        FilesApplicationPackage app = FilesApplicationPackage.fromDir(dir, Map.of());
        app.validateXML();
        DeployState state = new DeployState.Builder()
                .applicationPackage(app)
                .properties(new TestProperties().setHostedVespa(hosted))
                .endpoints(hosted ? Set.of(new ContainerEndpoint("default", ApplicationClusterEndpoint.Scope.zone,
                                                                 List.of("default.siamese.example.com")))
                                  : Set.of())
                .deployLogger((level, message) -> {
                    if (level.intValue() >= Level.WARNING.intValue()) {
                        warnings.add(message);
                        System.err.println("vespa " + level + ": " + message);
                    }
                })
                .build();
        VespaModel model = new VespaModel(new NullConfigModelRegistry(), state);
        new Validation().validate(model, new ValidationParameters(), state);
        return model;
    }

    // A two-tower package: documents embed with this component (models/), queries with "embedder" (models/query/).
    static final String DOCUMENT_EMBEDDER = "document-embedder";

    static boolean twoTowers(VespaModel model) {
        return hasComponent(model, DOCUMENT_EMBEDDER);
    }

    /** The package's hugging-face-embedder "embedder": the one queries name (in a two-tower package, the query tower). */
    static HuggingFaceEmbedder embedder(VespaModel model, Path dir) {
        return embedder(model, dir, "embedder", twoTowers(model) ? "models/query" : "models");
    }

    static HuggingFaceEmbedder embedder(VespaModel model, Path dir, String id, String folder) {
        HuggingFaceEmbedderConfig.Builder fromPackage = new HuggingFaceEmbedderConfig.Builder();
        model.getConfig(fromPackage, "default/component/" + id);
        // Everything but the file locations comes from the package's config as Vespa produced it; the model
        // files are the package's own, resolved to disk as the container's file distribution would.
        fromPackage.transformerModel(ModelReference.resolved(dir.resolve(folder + "/model.onnx").toAbsolutePath()))
                   .tokenizerPath(ModelReference.resolved(dir.resolve(folder + "/tokenizer.json").toAbsolutePath()));
        return new HuggingFaceEmbedder(OnnxRuntime.testInstance(), Embedder.Runtime.testInstance(), fromPackage.build(),
                                       new OnnxEvaluatorConfig.Builder().build(), ModelReference::value);
    }

    static final String COLBERT_CONFIG_ID = "default/component/colbert";

    static boolean hasComponent(VespaModel model, String id) {
        return model.getContainerClusters().values().stream()
                .anyMatch(c -> c.getComponentsMap().keySet().stream().anyMatch(k -> k.getName().equals(id)));
    }

    /** The package's colbert-embedder, or null when the package has none. */
    static ColBertEmbedder colbertEmbedder(VespaModel model, Path dir) {
        if (!hasComponent(model, "colbert")) return null;
        ColBertEmbedderConfig.Builder fromPackage = new ColBertEmbedderConfig.Builder();
        model.getConfig(fromPackage, COLBERT_CONFIG_ID);
        fromPackage.transformerModel(ModelReference.resolved(dir.resolve("models/colbert/model.onnx").toAbsolutePath()))
                   .tokenizerPath(ModelReference.resolved(dir.resolve("models/colbert/tokenizer.json").toAbsolutePath()));
        return new ColBertEmbedder(OnnxRuntime.testInstance(), Embedder.Runtime.testInstance(), fromPackage.build(),
                                   new OnnxEvaluatorConfig.Builder().build());
    }

    /** Each text as a query and as a document: {config, query: [[token vector]...], document, document_bits}. */
    static void colbert(VespaModel model, Path dir, Path textsFile, Path outFile) throws Exception {
        var embedder = colbertEmbedder(model, dir);
        if (embedder == null) throw new IllegalArgumentException("the package has no colbert-embedder component");
        ColBertEmbedderConfig.Builder builder = new ColBertEmbedderConfig.Builder();
        model.getConfig(builder, COLBERT_CONFIG_ID);
        var config = builder.build();
        // float at the model's full width on both sides (the manifest's dimension), and its sign bits
        int dim = JSON.readTree(dir.resolve("models/colbert/manifest.json").toFile()).get("dimension").asInt();
        TensorType queryType = TensorType.fromSpec("tensor<float>(qt{}, x[" + dim + "])");
        TensorType docType = TensorType.fromSpec("tensor<float>(dt{}, x[" + dim + "])");
        TensorType bitsType = TensorType.fromSpec("tensor<int8>(dt{}, x[" + dim / 8 + "])");
        List<String> texts = JSON.readValue(textsFile.toFile(), new TypeReference<List<String>>() {});
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("config", Map.of("max_query_tokens", config.maxQueryTokens(), "max_document_tokens", config.maxDocumentTokens(),
                                 "max_tokens", config.transformerMaxTokens(), "query_token_id", config.queryTokenId(),
                                 "document_token_id", config.documentTokenId(), "mask_token", config.transformerMaskToken(),
                                 "attend_to_expansion_tokens", config.attendToExpansionTokens(),
                                 "output", config.transformerOutput()));
        List<Object> queries = new ArrayList<>(), documents = new ArrayList<>(), bits = new ArrayList<>();
        for (String text : texts) {
            queries.add(Container.chunkValues(embedder.embed(text, new Embedder.Context("query(qt)").setEmbedderId("colbert"), queryType)));
            documents.add(Container.chunkValues(embedder.embed(text, new Embedder.Context("schema.indexing").setEmbedderId("colbert"), docType)));
            bits.add(Container.chunkValues(embedder.embed(text, new Embedder.Context("schema.indexing").setEmbedderId("colbert"), bitsType)));
        }
        out.put("query", queries);
        out.put("document", documents);
        out.put("document_bits", bits);
        JSON.writeValue(outFile.toFile(), out);
        embedder.deconstruct();
        System.out.println(JSON.writeValueAsString(Map.of("embedded", texts.size())));
    }

    static void embed(VespaModel model, Path dir, Path textsFile, Path outFile) throws Exception {
        var embedder = embedder(model, dir);
        // documents: a two-tower package's document embedder, built from its own component config
        var documents = twoTowers(model) ? embedder(model, dir, DOCUMENT_EMBEDDER, "models") : embedder;
        HuggingFaceEmbedderConfig config = embedderConfig(model);
        // one vector per text: a chunked field tensor(chunk{}, x[D]) embeds each chunk into its x[D] subspace
        TensorType type = TensorType.fromSpec(fieldType(model)).indexedSubtype();
        List<String> texts = JSON.readValue(textsFile.toFile(), new TypeReference<List<String>>() {});
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("config", Map.of("pooling", config.poolingStrategy().toString(), "normalize", config.normalize(),
                                 "max_tokens", config.transformerMaxTokens(), "output", config.transformerOutput(),
                                 "prepend_query", config.prependQuery(), "prepend_document", config.prependDocument()));
        out.put("type", type.toString());
        out.put("two_towers", twoTowers(model));
        for (String context : List.of("schema.indexing", "query(q)")) {
            boolean query = context.equals("query(q)");
            var side = query ? embedder : documents;
            String id = query || !twoTowers(model) ? "embedder" : DOCUMENT_EMBEDDER;
            List<List<Double>> vectors = new ArrayList<>();
            for (String text : texts)
                vectors.add(vector((IndexedTensor) side.embed(text, new Embedder.Context(context).setEmbedderId(id), type)));
            out.put(query ? "query" : "document", vectors);
        }
        JSON.writeValue(outFile.toFile(), out);
        embedder.deconstruct();
        if (documents != embedder) documents.deconstruct();
        System.out.println(JSON.writeValueAsString(Map.of("embedded", texts.size(), "type", type.toString())));
    }

    static HuggingFaceEmbedderConfig embedderConfig(VespaModel model) {
        HuggingFaceEmbedderConfig.Builder builder = new HuggingFaceEmbedderConfig.Builder();
        model.getConfig(builder, EMBEDDER_CONFIG_ID);
        return builder.build();
    }

    @SuppressWarnings("unchecked")
    static void container(VespaModel model, Path dir, Path inFile, Path outFile) throws Exception {
        Map<String, Object> in = JSON.readValue(inFile.toFile(), new TypeReference<Map<String, Object>>() {});
        // A late-interaction export served alone has no hugging-face-embedder; the other has no colbert-embedder.
        var embedder = hasComponent(model, "embedder") ? embedder(model, dir) : null;
        var colbert = colbertEmbedder(model, dir);
        Map<String, Embedder> embedders = new LinkedHashMap<>();
        if (embedder != null) embedders.put("embedder", embedder);
        var documents = twoTowers(model) ? embedder(model, dir, DOCUMENT_EMBEDDER, "models") : null;
        if (documents != null) embedders.put(DOCUMENT_EMBEDDER, documents);
        if (colbert != null) embedders.put("colbert", colbert);
        var container = new Container(model, embedders);
        String schema = (String) in.get("schema");
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("documents", container.index((List<Map<String, Object>>) in.get("documents"), schema,
                                             (String) in.get("tensor_field")));
        out.put("queries", container.search((List<Map<String, Object>>) in.get("queries"), schema));
        out.put("fields", container.fields(schema));
        JSON.writeValue(outFile.toFile(), out);
        if (embedder != null) embedder.deconstruct();
        if (documents != null) documents.deconstruct();
        if (colbert != null) colbert.deconstruct();
        System.out.println(JSON.writeValueAsString(Map.of("documents", ((List<?>) out.get("documents")).size(),
                                                          "queries", ((List<?>) out.get("queries")).size())));
    }

    /** What `chunk fixed-length N` / `chunk sentence` in an indexing statement would cut each text into. */
    @SuppressWarnings("unchecked")
    static void chunks(Path inFile, Path outFile) throws Exception {
        Map<String, Object> in = JSON.readValue(inFile.toFile(), new TypeReference<Map<String, Object>>() {});
        String name = (String) in.get("chunker");
        Chunker chunker = switch (name) {
            case "fixed-length" -> new FixedLengthChunker();
            case "sentence" -> new SentenceChunker();
            default -> throw new IllegalArgumentException("no Vespa chunker " + name);
        };
        var context = new Chunker.Context("chunks", (List<String>) in.get("arguments"), new HashMap<>());
        List<List<String>> out = new ArrayList<>();
        for (String text : (List<String>) in.get("texts"))
            out.add(chunker.chunk(text, context).stream().map(Chunker.Chunk::text).toList());
        JSON.writeValue(outFile.toFile(), Map.of("chunks", out));
    }

    /** The embedding field's tensor type, as the schema declares it. */
    static String fieldType(VespaModel model) {
        var schema = model.getSearchClusters().get(0).schemas().values().iterator().next().fullSchema();
        return schema.getField("embedding").getDataType().getName();
    }

    static List<Double> vector(IndexedTensor t) {
        List<Double> values = new ArrayList<>();
        for (int i = 0; i < t.size(); i++) values.add(t.get(i));
        return values;
    }
}
