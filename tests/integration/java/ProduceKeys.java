// Java side of test_kafka_java.py: produces one record per key with Apache Kafka's own Java producer and its
// default partitioner (no partitioner.class set), so the test can compare partitions with ringmq's. Single thread.
// Usage: java -cp 'build/kafka/lib/*' ProduceKeys.java BOOTSTRAP TOPIC < keys (one hex-encoded key per line)
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class ProduceKeys {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        HexFormat hex = HexFormat.of();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p);
             BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII))) {
            String line;
            int i = 0;
            while ((line = in.readLine()) != null) {
                byte[] key = hex.parseHex(line.trim());
                byte[] value = ("java:" + i++).getBytes(StandardCharsets.US_ASCII);
                sent.add(producer.send(new ProducerRecord<>(args[1], key, value)));
            }
            for (Future<RecordMetadata> f : sent)
                f.get();
        }
        System.out.println("sent " + sent.size());
    }
}
