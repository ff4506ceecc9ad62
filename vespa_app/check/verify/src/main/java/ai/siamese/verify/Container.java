package ai.siamese.verify;

import ai.vespa.modelintegration.evaluator.OnnxRuntime;
import com.yahoo.component.ComponentId;
import com.yahoo.data.access.simple.Value;
import com.yahoo.component.chain.Chain;
import com.yahoo.component.provider.ComponentRegistry;
import com.yahoo.container.QrSearchersConfig;
import com.yahoo.document.Document;
import com.yahoo.document.DocumentType;
import com.yahoo.document.DocumentTypeManager;
import com.yahoo.document.config.DocumentmanagerConfig;
import com.yahoo.document.datatypes.Array;
import com.yahoo.document.datatypes.FieldValue;
import com.yahoo.document.datatypes.StringFieldValue;
import com.yahoo.document.datatypes.TensorFieldValue;
import com.yahoo.language.Linguistics;
import com.yahoo.language.opennlp.OpenNlpLinguistics;
import com.yahoo.language.process.Embedder;
import com.yahoo.prelude.IndexFacts;
import com.yahoo.prelude.IndexModel;
import com.yahoo.prelude.query.CompositeItem;
import com.yahoo.prelude.query.IndexedItem;
import com.yahoo.prelude.query.Item;
import com.yahoo.prelude.query.NearestNeighborItem;
import com.yahoo.prelude.query.NullItem;
import com.yahoo.prelude.query.TermItem;
import com.yahoo.prelude.query.WeakAndItem;
import com.yahoo.search.Query;
import com.yahoo.search.Result;
import com.yahoo.search.Searcher;
import com.yahoo.search.config.IndexInfoConfig;
import com.yahoo.search.config.SchemaInfoConfig;
import com.yahoo.search.query.profile.compiled.CompiledQueryProfileRegistry;
import com.yahoo.search.query.profile.config.QueryProfilesConfig;
import com.yahoo.search.ranking.GlobalPhaseRanker;
import com.yahoo.search.ranking.RankProfilesEvaluator;
import com.yahoo.search.ranking.RankProfilesEvaluatorFactory;
import com.yahoo.search.rendering.JsonRenderer;
import com.yahoo.search.result.ErrorMessage;
import com.yahoo.search.result.FeatureData;
import com.yahoo.search.result.Hit;
import com.yahoo.search.schema.SchemaInfo;
import com.yahoo.search.searchchain.Execution;
import com.yahoo.search.yql.MinimalQueryInserter;
import com.yahoo.tensor.IndexedTensor;
import com.yahoo.tensor.Tensor;
import com.yahoo.vespa.config.search.RankProfilesConfig;
import com.yahoo.vespa.config.search.core.OnnxModelsConfig;
import com.yahoo.vespa.config.search.core.RankingConstantsConfig;
import com.yahoo.vespa.config.search.core.RankingExpressionsConfig;
import com.yahoo.vespa.configdefinition.IlscriptsConfig;
import com.yahoo.vespa.indexinglanguage.FieldValuesFactory;
import com.yahoo.vespa.indexinglanguage.ScriptParserContext;
import com.yahoo.vespa.indexinglanguage.expressions.InputExpression;
import com.yahoo.vespa.indexinglanguage.expressions.OutputExpression;
import com.yahoo.vespa.indexinglanguage.expressions.ScriptExpression;
import com.yahoo.vespa.indexinglanguage.expressions.StatementExpression;
import com.yahoo.vespa.indexinglanguage.parser.IndexingInput;
import com.yahoo.vespa.model.VespaModel;


import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The parts of a Vespa container that turn our feed and our queries into what the content nodes get, run
 * in-process from the package's own configuration as the config model derives it:
 *
 *   documents: the indexing statements (ilscripts config) parsed and executed by Vespa's indexing language,
 *              with the package's embedder, on documents built from the document types Vespa derived;
 *   queries:   each request map through Query (the package's default query profile, schema info and
 *              embedder: where embed(...) of the query happens), MinimalQueryInserter (the YQL parser), and a
 *              terminal searcher of ours standing in for the content cluster: it records the query tree,
 *              rank profile and query tensors, and answers with the hits it was given, whose match features
 *              then go through Vespa's GlobalPhaseRanker with the rank profile's global-phase expression.
 */
final class Container {

    // Config ids of the components that hold these configs in a running container (see VespaModel.allConfigIds).
    static final String INDEXING = "default/docprocchains/chain/indexing/component/com.yahoo.docprocs.indexing.IndexingProcessor";
    static final String QUERY_PROFILES = "default/component/com.yahoo.search.query.profile.compiled.CompiledQueryProfileRegistry";
    static final String SCHEMA_INFO = "default/component/com.yahoo.search.schema.SchemaInfo";
    static final String EXECUTION = "default/component/com.yahoo.search.handler.SearchHandler/com.yahoo.search.searchchain.ExecutionFactory";
    static final String EVALUATOR = "default/component/ranking-expression-evaluator.";

    private final VespaModel model;
    private final Map<String, Embedder> embedders;
    private final Linguistics linguistics = new OpenNlpLinguistics();

    private final SchemaInfo schemaInfo;

    Container(VespaModel model, Map<String, Embedder> embedders) {
        this.model = model;
        this.embedders = embedders;
        this.schemaInfo = new SchemaInfo(config(model, new SchemaInfoConfig.Builder(), SCHEMA_INFO, SchemaInfoConfig.class),
                                         config(model, new QrSearchersConfig.Builder(), SCHEMA_INFO, QrSearchersConfig.class));
    }

    @SuppressWarnings("unchecked")
    static <T> T config(VespaModel model, com.yahoo.config.ConfigInstance.Builder builder, String id, Class<T> type) {
        model.getConfig(builder, id);
        try {
            return type.getConstructor(builder.getClass()).newInstance(builder);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException(e);
        }
    }

    // ------------------------------------------------------------------ feed side

    /** Each document (a map of field name → string, as our feeder sends it) through the indexing statements. */
    List<Map<String, Object>> index(List<Map<String, Object>> documents, String schema, String tensorField) throws Exception {
        var docman = config(model, new DocumentmanagerConfig.Builder(), INDEXING, DocumentmanagerConfig.class);
        var ilscripts = config(model, new IlscriptsConfig.Builder(), INDEXING, IlscriptsConfig.class);
        var types = new DocumentTypeManager(docman);
        DocumentType type = types.getDocumentType(schema);
        ScriptExpression script = null;
        List<String> statements = new ArrayList<>();
        for (IlscriptsConfig.Ilscript ilscript : ilscripts.ilscript()) {
            if (!ilscript.doctype().equals(schema)) continue;
            // As Vespa's IndexingProcessor builds its script (docprocs' ScriptManager, not on Maven Central).
            var context = new ScriptParserContext(linguistics, Map.of(), embedders, Map.of());
            context.getAnnotatorConfig().setMaxTermOccurrences(ilscripts.maxtermoccurrences());
            var optimizer = new InputExpression.FieldPathOptimizer(type);
            List<StatementExpression> parsed = new ArrayList<>();
            for (String content : ilscript.content()) {
                statements.add(content);
                context.setInputStream(new IndexingInput(content));
                StatementExpression statement = StatementExpression.newInstance(context);
                var outputs = new OutputExpression.OutputFieldNameExtractor();
                statement.select(outputs, outputs);
                statement.select(optimizer, optimizer);
                if (!outputs.getOutputFieldNames().isEmpty())  // tells embed which field it embeds for
                    statement.setStatementOutput(type, type.getField(outputs.getOutputFieldNames().get(0)));
                parsed.add(statement);
            }
            script = new ScriptExpression(parsed);
            script.select(optimizer, optimizer);
            script.resolve(type);  // type resolution, as before the container runs a script
        }
        if (script == null) throw new IllegalArgumentException("no indexing script for document type " + schema);
        List<Map<String, Object>> out = new ArrayList<>();
        for (Map<String, Object> fields : documents) {
            Map<String, Object> row = new LinkedHashMap<>();
            row.put("statements", statements);
            try {
                Document doc = new Document(type, "id:" + schema + ":" + schema + "::" + fields.get("id"));
                for (var field : fields.entrySet())
                    if (field.getValue() != null) doc.setFieldValue(field.getKey(), fieldValue(type, field.getKey(), field.getValue()));
                Document indexed = script.execute(new FieldValuesFactory(), doc);
                FieldValue value = type.getField(tensorField) != null ? indexed.getFieldValue(tensorField) : null;
                if (value instanceof TensorFieldValue t && t.getTensor().isPresent())
                    row.put("embedding", t.getTensor().get().type().hasMappedDimensions()
                                         ? chunkValues(t.getTensor().get()) : values(t.getTensor().get()));
                else
                    row.put("embedding", null);
                // A late-interaction package's colbert field: {token label: its cells}.
                if (type.getField("colbert") != null
                        && indexed.getFieldValue("colbert") instanceof TensorFieldValue c && c.getTensor().isPresent())
                    row.put("colbert", chunkValues(c.getTensor().get()));
            } catch (Exception | LinkageError e) {
                if (Boolean.getBoolean("trace")) e.printStackTrace();
                row.put("error", e.getClass().getSimpleName() + ": " + Verify.messages(e));
            }
            out.add(row);
        }
        return out;
    }

    /** A string, or a list of strings for an array<string> field (chunks), as the document JSON would give it. */
    static FieldValue fieldValue(DocumentType type, String name, Object value) {
        if (!(value instanceof List<?> items)) return new StringFieldValue(value.toString());
        var array = new Array<StringFieldValue>(type.getField(name).getDataType());
        for (Object item : items) array.add(new StringFieldValue(item.toString()));
        return array;
    }

    // ------------------------------------------------------------------ query side

    /** The schema's fields and their types as the container sees them (its schema info). */
    Map<String, String> fields(String schema) {
        Map<String, String> fields = new LinkedHashMap<>();
        schemaInfo.schemas().get(schema).fields().forEach((name, field) -> fields.put(name, field.type().toString()));
        return fields;
    }

    /** One request: {"params": {...}, "hits": [{"id", "relevance", "features": {...}}]}. */
    List<Map<String, Object>> search(List<Map<String, Object>> requests, String schema) {
        var profiles = CompiledQueryProfileRegistry.fromConfig(
                config(model, new QueryProfilesConfig.Builder(), QUERY_PROFILES, QueryProfilesConfig.class));
        var indexFacts = new IndexFacts(new IndexModel(
                config(model, new IndexInfoConfig.Builder(), EXECUTION, IndexInfoConfig.class),
                config(model, new QrSearchersConfig.Builder(), EXECUTION, QrSearchersConfig.class))).freeze();
        var rankProfiles = config(model, new RankProfilesConfig.Builder(), EVALUATOR + schema, RankProfilesConfig.class);
        var ranker = globalPhaseRanker(schema, rankProfiles);
        // What the content nodes return with each hit: the profile's match features, as Vespa derived them.
        Map<String, List<String>> matchFeatures = new LinkedHashMap<>();
        Map<String, List<String>> summaryFeatures = new LinkedHashMap<>();
        for (var profile : rankProfiles.rankprofile())
            for (var property : profile.fef().property()) {
                if (property.name().equals("vespa.match.feature"))
                    matchFeatures.computeIfAbsent(profile.name(), k -> new ArrayList<>()).add(property.value());
                if (property.name().equals("vespa.summary.feature"))
                    summaryFeatures.computeIfAbsent(profile.name(), k -> new ArrayList<>()).add(property.value());
            }
        List<Map<String, Object>> out = new ArrayList<>();
        for (Map<String, Object> request : requests) {
            Map<String, Object> row = new LinkedHashMap<>();
            try {
                Map<String, String> params = new LinkedHashMap<>();
                ((Map<String, Object>) request.get("params")).forEach((k, v) -> params.put(k, String.valueOf(v)));
                var query = new Query.Builder().setRequestMap(params)
                                               .setQueryProfile(profiles.findQueryProfile("default"))
                                               .setEmbedders(embedders)
                                               .setSchemaInfo(schemaInfo)
                                               .build();
                var capture = new Capture(row, (List<Map<String, Object>>) request.get("hits"), ranker, schema,
                                          matchFeatures);
                row.put("summary_features", summaryFeatures.getOrDefault(params.get("ranking"), List.of()));
                var chain = new Chain<Searcher>(new MinimalQueryInserter(linguistics), capture);
                var context = Execution.Context.createContextStub(null, indexFacts, schemaInfo, linguistics);
                Result result = new Execution(chain, context).search(query);
                ErrorMessage error = result.hits().getError();
                if (error != null) row.put("error", error.getMessage() + (error.getDetailedMessage() != null ? ": " + error.getDetailedMessage() : ""));
                List<Map<String, Object>> hits = new ArrayList<>();
                for (Hit hit : result.hits().asList())
                    if (!hit.isMeta()) hits.add(Map.of("id", hit.getId().toString(), "relevance", hit.getRelevance().getScore()));
                row.put("hits", hits);
                row.put("rendered", render(result, new Execution(chain, context)));
            } catch (Exception e) {
                row.put("error", e.getClass().getSimpleName() + ": " + Verify.messages(e));
            }
            out.add(row);
        }
        return out;
    }

    /** The result as the query API returns it: Vespa's JSON renderer, with the query's own format settings. */
    static String render(Result result, Execution execution) throws Exception {
        var renderer = new JsonRenderer();
        renderer.init();
        var out = new ByteArrayOutputStream();
        try {
            renderer.renderResponse(out, result, execution, result.getQuery()).get();
        } finally {
            renderer.deconstruct();
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    private GlobalPhaseRanker globalPhaseRanker(String schema, RankProfilesConfig rankProfiles) {
        String id = EVALUATOR + schema;
        var evaluator = new RankProfilesEvaluator(
                rankProfiles,
                config(model, new RankingConstantsConfig.Builder(), id, RankingConstantsConfig.class),
                config(model, new RankingExpressionsConfig.Builder(), id, RankingExpressionsConfig.class),
                config(model, new OnnxModelsConfig.Builder(), id, OnnxModelsConfig.class),
                new com.yahoo.filedistribution.fileacquirer.FileAcquirer() {
                    public java.io.File waitFor(com.yahoo.config.FileReference ref, long timeout, java.util.concurrent.TimeUnit unit) {
                        throw new IllegalStateException("no files in a global phase of ours: " + ref);
                    }
                    public void shutdown() { }
                },
                OnnxRuntime.testInstance());
        var registry = new ComponentRegistry<RankProfilesEvaluator>();
        registry.register(new ComponentId("ranking-expression-evaluator." + schema), evaluator);
        registry.freeze();
        return new GlobalPhaseRanker(new RankProfilesEvaluatorFactory(registry));
    }

    /** Stands where the content cluster would: records what reached it, answers with the hits it was given. */
    static final class Capture extends Searcher {
        final Map<String, Object> row;
        final List<Map<String, Object>> hits;
        final GlobalPhaseRanker ranker;
        final String schema;
        final Map<String, List<String>> matchFeatures;

        Capture(Map<String, Object> row, List<Map<String, Object>> hits, GlobalPhaseRanker ranker, String schema,
                Map<String, List<String>> matchFeatures) {
            this.matchFeatures = matchFeatures;
            this.row = row;
            this.hits = hits == null ? List.of() : hits;
            this.ranker = ranker;
            this.schema = schema;
        }

        @Override
        public Result search(Query query, Execution execution) {
            row.put("tree", tree(query.getModel().getQueryTree().getRoot()));
            row.put("profile", query.getRanking().getProfile());
            row.put("hits_wanted", query.getHits());
            // The summary fields the request selects (YQL's select list), as the content nodes will be asked.
            row.put("summary_fields", new ArrayList<>(query.getPresentation().getSummaryFields()));
            // Every query input the rank profile declares (Vespa's schema info, not our client's idea of it).
            Map<String, Object> tensors = new LinkedHashMap<>();
            var declared = execution.context().schemaInfo().schemas().get(schema).rankProfiles()
                                    .get(query.getRanking().getProfile());
            for (String name : declared == null ? List.<String>of() : declared.inputs().keySet()) {
                String key = name.startsWith("query(") ? name : "query(" + name + ")";
                var tensor = query.getRanking().getFeatures().getTensor(key);
                // a mapped-indexed tensor (a vector per query token) as {label: vector}
                tensors.put(key.substring(6, key.length() - 1),
                            tensor.map(t -> t.type().hasMappedDimensions() ? (Object) chunkValues(t) : values(t)).orElse(null));
            }
            row.put("inputs", tensors);
            Result result = new Result(query);
            List<String> returned = matchFeatures.getOrDefault(query.getRanking().getProfile(), List.of());
            row.put("match_features", returned);
            for (Map<String, Object> h : hits) {
                Hit hit = new Hit(h.get("id").toString(), ((Number) h.get("relevance")).doubleValue());
                Map<String, Tensor> features = new LinkedHashMap<>();
                ((Map<String, Object>) h.get("features")).forEach((k, v) -> {  // a number, or a tensor literal
                    if (returned.contains(k))
                        features.put(k, v instanceof Number n ? Tensor.from(n.doubleValue()) : Tensor.from(v.toString()));
                });
                hit.setField("matchfeatures", new FeatureData(features));
                // Summary fields as the content nodes return them: an array<string> as an array value.
                ((Map<String, Object>) h.getOrDefault("fields", Map.of())).forEach((k, v) -> {
                    if (v instanceof List<?> list) {
                        var array = new Value.ArrayValue();
                        list.forEach(e -> array.add(new Value.StringValue(e.toString())));
                        hit.setField(k, array);
                    } else {
                        hit.setField(k, v);
                    }
                });
                result.hits().add(hit);
            }
            result.setTotalHitCount(hits.size());
            row.put("global_phase_rerank_count", ranker.getRerankCount(query, schema));
            ranker.rerankHits(query, result, schema);  // as the ClusterSearcher does once the content nodes answered
            return result;
        }
    }

    /** The query tree as plain data: what kind of node, on which field, with which terms and parameters. */
    static Map<String, Object> tree(Item item) {
        Map<String, Object> node = new LinkedHashMap<>();
        if (item == null || item instanceof NullItem) return Map.of("type", "NULL");  // nothing to match
        node.put("type", item.getItemType().name());
        if (item instanceof IndexedItem indexed) node.put("index", indexed.getIndexName());
        if (item instanceof TermItem term) node.put("term", term.stringValue());
        if (item instanceof NearestNeighborItem nn) {
            node.put("index", nn.getIndexName());
            node.put("query_tensor", nn.getQueryTensorName());
            node.put("target_hits", nn.getTargetNumHits());
            node.put("explore_additional_hits", nn.getHnswExploreAdditionalHits());
            node.put("approximate", nn.getAllowApproximate());
        }
        if (item instanceof WeakAndItem wand) node.put("n", wand.getN());
        if (item instanceof CompositeItem composite) {
            List<Object> children = new ArrayList<>();
            for (Item child : composite.items()) children.add(tree(child));
            node.put("children", children);
        }
        return node;
    }

    /** A tensor(chunk{}, x[D]) as {chunk label: its vector}. */
    static Map<String, List<Double>> chunkValues(Tensor t) {
        Map<String, List<Double>> chunks = new LinkedHashMap<>();
        var cells = t.cellIterator();
        while (cells.hasNext()) {
            var cell = cells.next();
            chunks.computeIfAbsent(cell.getKey().label(0), k -> new ArrayList<>()).add(cell.getValue());
        }
        return chunks;
    }

    static List<Double> values(Tensor t) {
        List<Double> values = new ArrayList<>();
        if (t instanceof IndexedTensor indexed)
            for (int i = 0; i < indexed.size(); i++) values.add(indexed.get(i));
        else
            t.valueIterator().forEachRemaining(values::add);
        return values;
    }

}
