// Runs lines through Elasticsearch's own grok engine (org.elasticsearch.grok, the library behind
// the ingest grok processor), from the jars of a real Elasticsearch distribution. Test support only.
//
//   java -cp '<es>/lib/*' EsGrok.java <definitions.tsv> <PATTERN_A,PATTERN_B,...> < lines
//
// definitions.tsv: NAME<TAB>pattern per line (ingest syntax, as pattern_definitions).
// stdin: one base64(UTF-8) line per input. stdout per input: the index of the first matching
// pattern (-1 for none), then <TAB>base64(field):base64(value) for each capture.
import org.elasticsearch.grok.Grok;
import org.elasticsearch.grok.GrokBuiltinPatterns;
import org.elasticsearch.grok.MatcherWatchdog;
import org.elasticsearch.grok.PatternBank;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

public class EsGrok {
    public static void main(String[] args) throws Exception {
        Map<String, String> definitions = new LinkedHashMap<>();
        for (String line : Files.readAllLines(Path.of(args[0]), StandardCharsets.UTF_8)) {
            int tab = line.indexOf('\t');
            definitions.put(line.substring(0, tab), line.substring(tab + 1));
        }
        PatternBank bank = GrokBuiltinPatterns.get(true).extendWith(definitions);
        List<Grok> groks = new ArrayList<>();
        for (String name : args[1].split(",")) {
            groks.add(new Grok(bank, "%{" + name + "}", MatcherWatchdog.newInstance(1000), System.err::println));
        }
        Base64.Decoder dec = Base64.getDecoder();
        Base64.Encoder enc = Base64.getEncoder();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        StringBuilder out = new StringBuilder();
        for (String encoded; (encoded = in.readLine()) != null; ) {
            String text = new String(dec.decode(encoded), StandardCharsets.UTF_8);
            int matched = -1;
            Map<String, Object> captures = null;
            for (int i = 0; i < groks.size() && matched < 0; i++) {
                captures = groks.get(i).captures(text);
                if (captures != null) {
                    matched = i;
                }
            }
            out.append(matched);
            if (captures != null) {
                for (Map.Entry<String, Object> e : captures.entrySet()) {
                    if (e.getValue() == null) continue;
                    out.append('\t').append(enc.encodeToString(e.getKey().getBytes(StandardCharsets.UTF_8)))
                        .append(':').append(enc.encodeToString(String.valueOf(e.getValue()).getBytes(StandardCharsets.UTF_8)));
                }
            }
            out.append('\n');
        }
        System.out.print(out);
    }
}
